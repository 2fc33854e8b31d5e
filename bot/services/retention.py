"""Data lifecycle: what the bot deletes, and when.

- At start (`sweep_at_start`, before any render runs): the `.part` / `.tmp` files a killed process left in the
  outputs folder and among the voice clips.
- Every NARRATOR_RETENTION_INTERVAL_S (`run_forever`, started by the bot and cancelled when it closes; `run_once`
  for one pass): masters, their JSON sidecars and render rows (with the script) older than NARRATOR_RETENTION_DAYS;
  then, while the outputs folder holds more than NARRATOR_OUTPUTS_MAX_BYTES, the oldest masters and their rows.
- Before a render is queued (`check_free_space`): refused with a clear sentence while the outputs disk has less than
  NARRATOR_MIN_FREE_BYTES free.

Rows are deleted in batches (db.retention) and their files after each batch commits; a file that no row names any
more (a master whose bookkeeping failed) goes by its age too. File work runs in a thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from bot.errors import UserError
from bot.narration.masters import is_partial, sweep_partial
from db import retention

if TYPE_CHECKING:
    from bot.settings import Settings
    from db.engine import Database

log = logging.getLogger(__name__)

MASTER_SUFFIXES = (".wav", ".json", ".flac", ".ogg")  # a master, its sidecar and its exports
DAY_FOLDER = re.compile(r"^\d{4}-\d{2}-\d{2}$")  # bot.narration.masters.master_stem's day folders


@dataclass(frozen=True)
class RetentionReport:
    rows_deleted: int = 0
    files_deleted: int = 0
    bytes_freed: int = 0


def _gib(n: float) -> str:
    return f"{n / 1024**3:.1f} GiB" if n >= 1024**3 else f"{n / 1024**2:.0f} MiB"


class Retention:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    @property
    def outputs(self) -> Path:
        return Path(self.settings.outputs_dir)

    # -- at start ----------------------------------------------------------------------------------------------------

    def sweep_at_start(self) -> int:
        removed = sweep_partial(self.outputs) + sweep_partial(Path(self.settings.data_dir) / "voices")
        if removed:
            log.info("removed %d partial file(s) left by an interrupted run", removed)
        return removed

    # -- before a render ---------------------------------------------------------------------------------------------

    def check_free_space(self) -> None:
        need = self.settings.min_free_bytes
        if need <= 0:
            return
        folder = self.outputs if self.outputs.exists() else self.outputs.parent
        free = shutil.disk_usage(folder).free
        if free < need:
            log.warning("refusing renders: %s free on the outputs disk, NARRATOR_MIN_FREE_BYTES is %s", _gib(free),
                        _gib(need))  # fmt: skip
            raise UserError(
                f"The bot's disk is almost full ({_gib(free)} free, renders need {_gib(need)}), so I cannot record "
                "anything now. Please try again later; the operator has been told in the log."
            )

    # -- the periodic task -------------------------------------------------------------------------------------------

    async def run_forever(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # a locked or unreachable database: try again next time
                log.exception("retention pass failed; retrying in %g s", self.settings.retention_interval_s)
            await asyncio.sleep(self.settings.retention_interval_s)

    async def run_once(self, now: datetime | None = None) -> RetentionReport:
        now = now or datetime.now(timezone.utc)
        cutoff = now - timedelta(days=self.settings.retention_days)
        by_age = await self._delete_old(cutoff)
        by_size = await self._enforce_budget()
        report = RetentionReport(*(a + b for a, b in zip(_tuple(by_age), _tuple(by_size), strict=True)))
        if report.rows_deleted or report.files_deleted:
            log.info("retention: deleted %d render row(s) and %d file(s), %s", report.rows_deleted,
                     report.files_deleted, _gib(report.bytes_freed))  # fmt: skip
        return report

    async def _delete_old(self, cutoff: datetime) -> RetentionReport:
        rows = files = freed = 0
        while True:
            async with self.db.sessions.begin() as s:
                batch = await retention.delete_renders_before(s, cutoff)
            rows += len(batch)
            paths = [p for r in batch for p in (r.master_path, r.sidecar_path) if p]
            n, b = await asyncio.to_thread(_delete_files, [Path(p) for p in paths])
            files, freed = files + n, freed + b
            if len(batch) < retention.DEFAULT_BATCH:
                break
        n, b = await asyncio.to_thread(self._delete_files_older_than, cutoff)  # masters no row names
        await asyncio.to_thread(_remove_empty_folders, self.outputs)
        return RetentionReport(rows, files + n, freed + b)

    def _delete_files_older_than(self, cutoff: datetime) -> tuple[int, int]:
        old = [f for group in _masters(self.outputs) if group.mtime < cutoff.timestamp() for f in group.files]
        return _delete_files(old)

    async def _enforce_budget(self) -> RetentionReport:
        masters = await asyncio.to_thread(_masters, self.outputs)
        total = sum(m.size for m in masters)
        budget = self.settings.outputs_max_bytes
        if total <= budget:
            return RetentionReport()
        doomed: list[_Master] = []
        for master in sorted(masters, key=lambda m: m.mtime):  # oldest first
            if total <= budget:
                break
            doomed.append(master)
            total -= master.size
        n, freed = await asyncio.to_thread(_delete_files, [f for m in doomed for f in m.files])
        rows = await self._delete_rows_of({str(m.stem.with_suffix(".wav")) for m in doomed})
        await asyncio.to_thread(_remove_empty_folders, self.outputs)
        return RetentionReport(rows, n, freed)

    async def _delete_rows_of(self, master_paths: set[str]) -> int:
        ids, after = [], 0
        async with self.db.sessions() as s:
            while True:
                page = await retention.renders_with_files(s, after_id=after)
                ids += [r.render_id for r in page if r.master_path in master_paths]
                if len(page) < retention.DEFAULT_BATCH:
                    break
                after = page[-1].render_id
        if not ids:
            return 0
        async with self.db.sessions.begin() as s:
            return await retention.delete_renders(s, ids)


def _tuple(report: RetentionReport) -> tuple[int, int, int]:
    return report.rows_deleted, report.files_deleted, report.bytes_freed


@dataclass
class _Master:
    """One master's files (the WAV, its sidecar, its exports), judged together."""

    stem: Path
    files: list[Path]
    size: int = 0
    mtime: float = 0.0


def _masters(folder: Path) -> list[_Master]:
    """Every finished master under the outputs folder: only in its day folders (`YYYY-MM-DD`), so nothing else an
    operator keeps there is ever touched."""
    if not folder.is_dir():
        return []
    found: dict[Path, _Master] = {}
    for day in folder.iterdir():
        if not (day.is_dir() and DAY_FOLDER.match(day.name)):
            continue
        for path in day.iterdir():
            if path.is_file() and path.suffix.lower() in MASTER_SUFFIXES and not is_partial(path):
                stat = path.stat()
                master = found.setdefault(path.with_suffix(""), _Master(path.with_suffix(""), []))
                master.files.append(path)
                master.size += stat.st_size
                master.mtime = max(master.mtime, stat.st_mtime)
    return list(found.values())


def _delete_files(paths: list[Path]) -> tuple[int, int]:
    count = freed = 0
    for path in paths:
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("could not delete %s: %s", path, exc)
            continue
        count, freed = count + 1, freed + size
    return count, freed


def _remove_empty_folders(folder: Path) -> None:
    if not folder.is_dir():
        return
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")  # a render may be about to write into today's
    for day in folder.iterdir():
        if day.is_dir() and DAY_FOLDER.match(day.name) and day.name < today:
            with contextlib.suppress(OSError):
                day.rmdir()  # only succeeds when empty
