"""Data lifecycle and faults: retention by age and by size, the start-up sweep, the free-space check, masters
published only with their sidecar, a stuck compute step, and a database that fails while a render finishes."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
from sqlalchemy.exc import OperationalError

from bot.errors import UserError
from bot.jobs.queue import Job, JobQueue
from bot.jobs.worker import InferenceWorker, StuckStep
from bot.narration import masters
from bot.narration.masters import MasterWriter
from bot.services.retention import Retention
from bot.settings import Settings
from db import repo
from db.engine import open_database
from db.models import RenderRow
from tests.scripted_engine import ScriptedEngine
from tests.services import services_for

pytestmark = pytest.mark.asyncio
GUILD, CHANNEL, ALICE = 10, 20, 1
NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)


def _settings(tmp_path: Path, **extra) -> Settings:
    return Settings(device="cpu", data_dir=tmp_path / "data", outputs_dir=tmp_path / "out",
                    database_url=f"sqlite+aiosqlite:///{tmp_path / 'n.db'}", **extra)  # fmt: skip


@pytest_asyncio.fixture
async def db(tmp_path):
    database = await open_database(_settings(tmp_path).database_url)
    yield database
    await database.close()


async def _render(db, outputs: Path, age_days: float, size: int, status: str = "done") -> tuple[int, Path, Path]:
    """A finished render with its master and sidecar on disk, `age_days` old (row and files)."""
    made = NOW - timedelta(days=age_days)
    day = outputs / made.strftime("%Y-%m-%d")
    day.mkdir(parents=True, exist_ok=True)
    master = day / f"m{int(age_days * 1000)}-{size}.wav"
    sidecar = master.with_suffix(".json")
    master.write_bytes(bytes(size))
    sidecar.write_text('{"script": "secret words"}')
    for path in (master, sidecar):
        os.utime(path, (made.timestamp(), made.timestamp()))
    async with db.sessions.begin() as s:
        render = await repo.add_render(s, GUILD, CHANNEL, ALICE, "secret words", None)
        await repo.mark_render(s, render.id, status, output_path=str(master))
        (await s.get(RenderRow, render.id)).created_at = made
    return render.id, master, sidecar


async def _ids(db) -> set[int]:
    async with db.sessions() as s:
        return {r.id for r in await repo.recent_renders(s, GUILD, 100)}


async def test_old_renders_go_with_their_files_new_and_running_ones_stay(tmp_path, db) -> None:
    settings = _settings(tmp_path, retention_days=30)
    out = settings.outputs_dir
    old_id, old_master, old_sidecar = await _render(db, out, 45, 1000)
    new_id, new_master, _ = await _render(db, out, 2, 1000)
    running_id, *_ = await _render(db, out, 60, 1000, status="running")
    orphan_day = out / (NOW - timedelta(days=50)).strftime("%Y-%m-%d")
    orphan_day.mkdir(parents=True, exist_ok=True)
    orphan = orphan_day / "orphan.wav"  # a master whose bookkeeping failed: no row names it
    orphan.write_bytes(b"x")
    os.utime(orphan, ((NOW - timedelta(days=50)).timestamp(),) * 2)
    keep = out / "notes.json"  # not in a day folder: the operator's, never touched
    keep.write_text("{}")
    report = await Retention(db, settings).run_once(now=NOW)
    assert report.rows_deleted == 1 and await _ids(db) == {new_id, running_id}
    assert not old_master.exists() and not old_sidecar.exists() and not orphan.exists()
    assert new_master.exists() and keep.exists()  # the running render's row stays for its worker
    assert not old_master.parent.exists()  # the emptied day folder went too


async def test_past_the_size_budget_the_oldest_masters_go_first(tmp_path, db) -> None:
    settings = _settings(tmp_path, retention_days=365, outputs_max_bytes=1024**2)
    out = settings.outputs_dir
    oldest = await _render(db, out, 5, 600_000)
    middle = await _render(db, out, 4, 600_000)
    newest = await _render(db, out, 3, 300_000)
    report = await Retention(db, settings).run_once(now=NOW)
    assert await _ids(db) == {middle[0], newest[0]} and report.rows_deleted == 1
    assert not oldest[1].exists() and not oldest[2].exists()  # the master and its sidecar together
    assert middle[1].exists() and newest[1].exists()
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert total <= settings.outputs_max_bytes


async def test_partial_files_are_swept_at_start(tmp_path, db) -> None:
    settings = _settings(tmp_path)
    day = settings.outputs_dir / "2026-06-01"
    day.mkdir(parents=True)
    clips = settings.data_dir / "voices" / "10"
    clips.mkdir(parents=True)
    partial = [day / ".083015-job4-abc.wav.part", day / ".m.json.1a2b3c4d.tmp", clips / "f00d.tmp.wav"]
    kept = [day / "083015-job4-abc.wav", clips / "f00d.wav"]
    for path in partial + kept:
        path.write_bytes(b"x")
    assert Retention(db, settings).sweep_at_start() == 3
    assert not any(p.exists() for p in partial) and all(p.exists() for p in kept)


async def test_renders_are_refused_when_the_disk_is_nearly_full(tmp_path, db) -> None:
    Retention(db, _settings(tmp_path, min_free_bytes=0)).check_free_space()
    with pytest.raises(UserError, match="disk is almost full"):
        Retention(db, _settings(tmp_path, min_free_bytes=2**60)).check_free_space()


async def test_a_failed_sidecar_leaves_no_master_and_abort_cleans_up(tmp_path, monkeypatch) -> None:
    writer = MasterWriter(tmp_path, "7", 24_000)
    writer.write(np.zeros(2400, np.float32))

    def broken(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(masters, "write_json_atomic", broken)
    with pytest.raises(OSError):
        writer.finish({"script": "x"})
    assert not writer.path.exists()  # never a master without its sidecar
    writer.abort()
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


async def test_a_published_master_has_its_sidecar(tmp_path) -> None:
    writer = MasterWriter(tmp_path, "8", 24_000)
    writer.write(np.zeros(2400, np.float32))
    path = writer.finish({"script": "x"})
    assert path.exists() and writer.sidecar_path.exists()
    assert [p.name for p in path.parent.iterdir() if masters.is_partial(p)] == []


async def test_a_stuck_step_fails_its_job_and_the_next_runs_on_a_fresh_thread() -> None:
    queue = JobQueue(max_queued_per_user=5)
    worker = InferenceWorker(queue, device="cpu", job_timeout_s=60, stuck_step_s=1.0)
    hang = threading.Event()
    threads: list[int] = []

    async def stuck(job, w):
        threads.append(await w.compute(threading.get_ident))
        await w.compute(hang.wait)  # a device call that never returns

    async def fine(job, w):
        return await w.compute(threading.get_ident)

    first, second = Job(GUILD, ALICE, stuck), Job(GUILD, 2, fine)
    queue.submit(first)
    queue.submit(second)
    worker.start()
    started = time.monotonic()
    with pytest.raises(StuckStep, match="stopped making progress for 1 s"):
        await asyncio.wait_for(first.done, 30)
    assert time.monotonic() - started < 20 and first.state == "failed"
    fresh = await asyncio.wait_for(second.done, 30)
    assert fresh != threads[0] and worker.threads_replaced == 1
    hang.set()  # let the abandoned thread end
    await worker.close()


async def test_a_busy_step_that_moves_is_not_stuck() -> None:
    queue = JobQueue(max_queued_per_user=5)
    worker = InferenceWorker(queue, device="cpu", job_timeout_s=60, stuck_step_s=2.0)

    def busy(cancel) -> int:  # like the engine: one long step that asks whether to stop before every frame
        deadline, n = time.monotonic() + 4.0, 0
        while time.monotonic() < deadline and not cancel.is_set():
            n += sum(range(200))
        return n

    async def work(job, w):
        return await w.compute(busy, job.cancel_event)

    job = Job(GUILD, ALICE, work)
    queue.submit(job)
    worker.start()
    assert await asyncio.wait_for(job.done, 30) > 0 and worker.threads_replaced == 0
    await worker.close()


async def test_the_master_is_posted_even_if_the_database_fails_at_the_end(tmp_path, db, monkeypatch) -> None:
    settings = _settings(tmp_path, custom_voice_model="scripted/custom-voice")
    services = services_for(settings, db, [ScriptedEngine()])
    await services.start()
    finals: list[str] = []

    class Reporter:
        async def status(self, text): ...
        async def note(self, text): ...
        async def done(self, text, attachment):
            finals.append((text, attachment))

    try:
        request = await services.say.prepare(GUILD, CHANNEL, ALICE, set(), "Hello there.", None)
        real_mark = repo.mark_render
        failures = {"left": 2}

        async def locked(session, render_id, status, **values):
            if status == "done" and failures["left"]:
                failures["left"] -= 1
                raise OperationalError("UPDATE renders", {}, Exception("database is locked"))
            await real_mark(session, render_id, status, **values)

        monkeypatch.setattr("bot.services.render_rows.MARK_RETRY_S", 0.05)
        monkeypatch.setattr(repo, "mark_render", locked)
        job, _ = await services.say.enqueue(request, Reporter())
        await asyncio.wait_for(job.done, 60)
        await services.say.drain(timeout=10)
        ((text, attachment),) = finals
        assert text.startswith("Done:") and attachment is not None and "Synthetic speech" in text
        for _ in range(100):  # the bookkeeping is retried in the background until it holds
            async with db.sessions() as s:
                row = await repo.get_render(s, request.render_id)
            if row.status != "running":
                break
            await asyncio.sleep(0.1)
        assert row.status == "done" and row.output_path and failures["left"] == 0
    finally:
        await services.shutdown()
