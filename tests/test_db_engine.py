"""Opening databases: masked URLs, `%` in URLs through Alembic, plain driver names, and one clear error
(`DatabaseUnusable`) for a database that cannot be used, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy.engine import make_url

from db import repo
from db.engine import async_url, current, describe_url, open_database, upgrade
from db.errors import DatabaseUnusable
from db.migrate import alembic_config, head_revision
from tests import db_backends

HINT = "is not a valid SQLite database; move it away or restore a backup"


@pytest.fixture(params=db_backends.BACKENDS)
def db_url(request, tmp_path: Path):
    yield from db_backends.fresh_url(request.param, tmp_path)


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


def test_describe_url_masks_the_password() -> None:
    shown = describe_url("postgresql+asyncpg://bot:s3cr%25et@db.example:5432/narrator")
    assert "s3cr" not in shown and "***" in shown and "db.example:5432/narrator" in shown
    assert describe_url("sqlite+aiosqlite:///data/narrator.db") == "sqlite+aiosqlite:///data/narrator.db"
    assert "not a valid URL" in describe_url("::nonsense::")


def test_plain_driver_names_get_their_async_driver() -> None:
    assert async_url("sqlite:///data/n.db").drivername == "sqlite+aiosqlite"
    assert async_url("postgresql://u:p@h/d").drivername == "postgresql+asyncpg"
    assert async_url("postgres://u:p@h/d").drivername == "postgresql+asyncpg"
    assert async_url("postgresql+asyncpg://u:p@h/d").password == "p"


@pytest.mark.asyncio
async def test_open_logs_the_url_masked(db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="db.engine"):
        db = await open_database(db_url)
    await db.close()
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "Database ready" in logged
    password = make_url(db_url).password
    if password:
        assert password not in logged and str(make_url(db_url).password) not in logged and "***" in logged


@pytest.fixture
def percent_url(db_url: str, tmp_path: Path) -> str:
    """A URL with a `%` in it: a SQLite file in a folder named with one, or the test server's URL (the CI server's
    password has a `%`, written %25 in the URL)."""
    if make_url(db_url).get_backend_name() != "sqlite":
        return db_url
    folder = tmp_path / "100% backed up"
    folder.mkdir()
    return f"sqlite+aiosqlite:///{folder / 'n.db'}"


def test_a_percent_in_the_url_survives_alembic(percent_url: str) -> None:
    # The alembic command line's way: env.py opens its own engine from the config's sqlalchemy.url.
    command.upgrade(alembic_config(percent_url), "head")
    assert current(percent_url) == head_revision()
    upgrade(percent_url)  # and the bot's way (the connection handed over)
    assert current(percent_url) == head_revision()


@pytest.mark.asyncio
async def test_a_plain_sqlite_url_works(tmp_path: Path) -> None:
    db = await open_database(f"sqlite:///{tmp_path / 'plain.db'}")
    async with db.sessions.begin() as s:
        await repo.add_voice(s, repo.NewVoice(guild_id=1, owner_id=1, scope="guild", kind="preset", name="a"))
    await db.close()


# ---- unusable databases ---------------------------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    message = str(exc)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_a_file_that_is_not_sqlite_gives_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "narrator.db"
    path.write_bytes(b"this is a text file, not a database\n" * 200)
    url = f"sqlite+aiosqlite:///{path}"
    with pytest.raises(DatabaseUnusable) as caught:
        asyncio.run(open_database(url))  # `narrator run`
    assert _one_line(caught.value) == f"{path} {HINT}"
    with pytest.raises(DatabaseUnusable, match="move it away"):
        upgrade(url)  # `narrator db upgrade`
    with pytest.raises(DatabaseUnusable, match="move it away"):
        current(url)  # `narrator db current`
    assert path.read_bytes().startswith(b"this is a text file")  # nothing was overwritten


@pytest.mark.asyncio
async def test_a_damaged_database_gives_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "narrator.db"
    url = f"sqlite+aiosqlite:///{path}"
    db = await open_database(url)
    async with db.sessions.begin() as s:
        for _ in range(300):
            await repo.add_render(s, 1, 2, 3, "x" * 500, None)
    await db.close()
    data = bytearray(path.read_bytes())
    data[4096 * 2 :] = b"\xa5" * (len(data) - 4096 * 2)  # keep the header and first pages, ruin the rest
    path.write_bytes(bytes(data))
    with pytest.raises(DatabaseUnusable) as caught:
        db = await open_database(url)
        async with db.sessions() as s:  # if opening did not touch a ruined page, the first query does
            await repo.recent_renders(s, 1, limit=1000)
    assert HINT in _one_line(caught.value) or "cannot open" in str(caught.value)


@pytest.mark.asyncio
async def test_a_folder_in_place_of_the_file_gives_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "narrator.db").mkdir()
    with pytest.raises(DatabaseUnusable, match="is a folder") as caught:
        await open_database(f"sqlite+aiosqlite:///{tmp_path / 'narrator.db'}")
    _one_line(caught.value)


@pytest.mark.asyncio
async def test_an_unreachable_server_gives_one_clear_error_without_the_password() -> None:
    url = f"postgresql+asyncpg://bot:hunter%252@127.0.0.1:{_closed_port()}/narrator"
    with pytest.raises(DatabaseUnusable) as caught:
        await open_database(url)
    message = _one_line(caught.value)
    assert "cannot connect to postgresql+asyncpg://bot:***@127.0.0.1" in message and "hunter" not in message


@pytest.mark.skipif("postgresql" not in db_backends.BACKENDS, reason=f"needs {db_backends.POSTGRES_ENV} (set in CI)")
@pytest.mark.asyncio
async def test_wrong_password_or_database_gives_one_clear_error() -> None:
    server = make_url(os.environ[db_backends.POSTGRES_ENV])
    missing = server.set(database="no_such_database").render_as_string(hide_password=False)
    with pytest.raises(DatabaseUnusable, match="cannot connect") as caught:
        await open_database(missing)
    assert "no_such_database" in _one_line(caught.value)
    wrong = server.set(password="not-the-password").render_as_string(hide_password=False)
    with pytest.raises(DatabaseUnusable, match="cannot connect") as caught:
        await open_database(wrong)
    assert "not-the-password" not in _one_line(caught.value)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("not a url at all", "not a valid database URL"),
        ("mysql+nosuchdriver://u:secret@h/d", "cannot use"),
    ],
)
@pytest.mark.asyncio
async def test_bad_urls_give_one_clear_error(url: str, words: str) -> None:
    with pytest.raises(DatabaseUnusable, match=words) as caught:
        await open_database(url)
    assert "secret" not in _one_line(caught.value)


def test_postgres_backend_listed_when_configured() -> None:
    assert ("postgresql" in db_backends.BACKENDS) == bool(os.environ.get(db_backends.POSTGRES_ENV))
