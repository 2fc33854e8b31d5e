"""Retention: old renders listed, deleted (returning master and sidecar paths) or their scripts blanked."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import update

from db import repo, retention
from db.engine import Database, open_database
from db.models import RenderRow
from tests import db_backends

GUILD, USER = 111, 1
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(params=db_backends.BACKENDS)
def db_url(request, tmp_path: Path):
    yield from db_backends.fresh_url(request.param, tmp_path)


@pytest_asyncio.fixture
async def database(db_url: str):
    db = await open_database(db_url)
    yield db
    await db.close()


async def _render(db: Database, days_old: float, status: str = "done", path: str | None = "out/a.wav") -> int:
    async with db.sessions.begin() as s:
        render = await repo.add_render(s, GUILD, 5, USER, f"[Calm] {days_old} days ago", None)
        if status != "queued":
            await repo.mark_render(s, render.id, status, **({"output_path": path} if path else {}))
        created = NOW - timedelta(days=days_old)
        await s.execute(update(RenderRow).where(RenderRow.id == render.id).values(created_at=created))
    return render.id


@pytest.mark.asyncio
async def test_old_finished_renders_are_listed_and_deleted_with_their_files(database: Database) -> None:
    old = await _render(database, 40, path="out/2026-10-22/old.wav")
    old_failed = await _render(database, 35, status="failed", path=None)
    still_running = await _render(database, 50, status="running", path=None)
    still_queued = await _render(database, 45, status="queued", path=None)
    recent = await _render(database, 2)
    cutoff = NOW - timedelta(days=30)
    async with database.sessions() as s:
        listed = await retention.old_renders(s, cutoff)
    assert [r.render_id for r in listed] == [old, old_failed]  # oldest first; unfinished never
    assert listed[0].master_path == "out/2026-10-22/old.wav"
    assert listed[0].sidecar_path == str(Path("out/2026-10-22/old.json"))
    assert listed[1].master_path is None and listed[1].sidecar_path is None
    assert listed[0].created_at == NOW - timedelta(days=40)

    async with database.sessions.begin() as s:
        first = await retention.delete_renders_before(s, cutoff, limit=1)
    async with database.sessions.begin() as s:
        rest = await retention.delete_renders_before(s, cutoff, limit=1)
        assert await retention.delete_renders_before(s, cutoff) == []
    assert [r.render_id for r in first + rest] == [old, old_failed]
    async with database.sessions() as s:
        left = {r.id for r in await repo.recent_renders(s, GUILD, limit=100)}
    assert left == {still_running, still_queued, recent}


@pytest.mark.asyncio
async def test_a_cutoff_in_another_time_zone_means_the_same_instant(database: Database) -> None:
    render = await _render(database, 1.0)  # created 2026-11-30 12:00 UTC
    tokyo = timezone(timedelta(hours=9))
    async with database.sessions() as s:
        just_after = (NOW - timedelta(days=1) + timedelta(minutes=1)).astimezone(tokyo)
        just_before = (NOW - timedelta(days=1) - timedelta(minutes=1)).astimezone(tokyo)
        assert [r.render_id for r in await retention.old_renders(s, just_after)] == [render]
        assert await retention.old_renders(s, just_before) == []
        naive_utc = (NOW - timedelta(days=1) + timedelta(minutes=1)).replace(tzinfo=None)
        assert [r.render_id for r in await retention.old_renders(s, naive_utc)] == [render]


@pytest.mark.asyncio
async def test_scrubbing_blanks_old_scripts_and_keeps_the_rows(database: Database) -> None:
    old = await _render(database, 10)
    running = await _render(database, 10, status="running", path=None)
    recent = await _render(database, 1)
    async with database.sessions.begin() as s:
        assert await retention.scrub_scripts_before(s, NOW - timedelta(days=7)) == 1
        assert await retention.scrub_scripts_before(s, NOW - timedelta(days=7)) == 0  # already blank
    async with database.sessions() as s:
        scrubbed, kept_running, kept = [await repo.get_render(s, i) for i in (old, running, recent)]
    assert scrubbed.script == "" and scrubbed.output_path == "out/a.wav" and scrubbed.status == "done"
    assert kept_running.script.startswith("[Calm]") and kept.script.startswith("[Calm]")


@pytest.mark.asyncio
async def test_paging_renders_with_files_for_a_size_budget(database: Database) -> None:
    ids = [await _render(database, d, path=f"out/{d}.wav") for d in (3, 2, 1)]
    await _render(database, 1, status="failed", path=None)
    async with database.sessions.begin() as s:
        page1 = await retention.renders_with_files(s, limit=2)
        page2 = await retention.renders_with_files(s, limit=2, after_id=page1[-1].render_id)
        assert [r.render_id for r in page1 + page2] == ids
        assert await retention.delete_renders(s, [ids[0]]) == 1
        assert await retention.delete_renders(s, []) == 0
    async with database.sessions() as s:
        assert [r.render_id for r in await retention.renders_with_files(s)] == ids[1:]
