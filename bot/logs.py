"""One logging setup for the whole process: console plus a rotating file, library noise turned down."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

LOG_FORMAT = "[{asctime}] [{levelname:<7}] {name}: {message}"
NOISY_LOGGERS = {
    "discord": logging.INFO,
    "discord.http": logging.WARNING,
    "discord.gateway": logging.WARNING,
    "discord.voice_state": logging.INFO,
    "aiosqlite": logging.WARNING,
    "sqlalchemy.engine": logging.WARNING,
    "alembic": logging.WARNING,
    "httpx": logging.WARNING,
    "urllib3": logging.WARNING,
    "filelock": logging.WARNING,
    "transformers": logging.ERROR,
    "huggingface_hub": logging.WARNING,
}


def setup_logging(log_dir: Path | None = None, level: int = logging.INFO) -> None:
    """Configure the root logger once; calling it again replaces the handlers it added."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_narrator", False):
            root.removeHandler(handler)
            handler.close()
    formatter = logging.Formatter(LOG_FORMAT, "%Y-%m-%d %H:%M:%S", style="{")
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(
            logging.handlers.RotatingFileHandler(
                log_dir / "narrator.log", maxBytes=32 * 1024 * 1024, backupCount=5, encoding="utf-8"
            )
        )
    for handler in handlers:
        handler.setFormatter(formatter)
        handler._narrator = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
    for name, noisy_level in NOISY_LOGGERS.items():
        logging.getLogger(name).setLevel(noisy_level)
