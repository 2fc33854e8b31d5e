"""Storage: SQLAlchemy models, async repositories and Alembic migrations (SQLite by default)."""
