"""Retention: find, delete or blank renders older than a cutoff.

Only finished renders are touched (a queued or running one is never deleted under its worker). Deleting returns the
files to remove (the master and its JSON sidecar, which lies beside it with the suffix `.json`); the caller deletes
them after the transaction commits. Work is done in batches of `limit` rows so one call never holds the database
for long; call again until it returns fewer than `limit`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePath

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import RenderRow, as_utc

UNFINISHED = ("queued", "running")
DEFAULT_BATCH = 500
SCRUBBED = ""  # what a scrubbed script becomes


@dataclass(frozen=True)
class RenderFiles:
    render_id: int
    guild_id: int
    created_at: datetime
    master_path: str | None
    sidecar_path: str | None


def sidecar_of(master_path: str | None) -> str | None:
    return str(PurePath(master_path).with_suffix(".json")) if master_path else None


def _old(cutoff: datetime):
    return (RenderRow.created_at < as_utc(cutoff)) & RenderRow.status.not_in(UNFINISHED)


async def old_renders(session: AsyncSession, cutoff: datetime, limit: int = DEFAULT_BATCH) -> list[RenderFiles]:
    """Finished renders created before `cutoff` (an aware datetime; naive means UTC), oldest first."""
    rows = await session.execute(
        select(RenderRow.id, RenderRow.guild_id, RenderRow.created_at, RenderRow.output_path)
        .where(_old(cutoff))
        .order_by(RenderRow.created_at, RenderRow.id)
        .limit(limit)
    )
    return [RenderFiles(i, g, c, path, sidecar_of(path)) for i, g, c, path in rows]


async def delete_renders_before(
    session: AsyncSession, cutoff: datetime, limit: int = DEFAULT_BATCH
) -> list[RenderFiles]:
    """Delete up to `limit` finished renders created before `cutoff`, oldest first; returns their files to delete."""
    doomed = await old_renders(session, cutoff, limit)
    if doomed:
        ids = [r.render_id for r in doomed]
        await session.execute(
            delete(RenderRow).where(RenderRow.id.in_(ids)).execution_options(synchronize_session=False)
        )
    return doomed


async def delete_renders(session: AsyncSession, render_ids: list[int]) -> int:
    """Delete these renders' rows (for a size budget: the caller chose the oldest masters); unfinished ones stay."""
    if not render_ids:
        return 0
    result = await session.execute(
        delete(RenderRow)
        .where(RenderRow.id.in_(render_ids), RenderRow.status.not_in(UNFINISHED))
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


async def renders_with_files(session: AsyncSession, limit: int = DEFAULT_BATCH, after_id: int = 0) -> list[RenderFiles]:
    """Finished renders that have a master, by id (oldest first), from `after_id` on: to total the files against a
    size budget, page by page."""
    rows = await session.execute(
        select(RenderRow.id, RenderRow.guild_id, RenderRow.created_at, RenderRow.output_path)
        .where(RenderRow.id > after_id, RenderRow.output_path.is_not(None), RenderRow.status.not_in(UNFINISHED))
        .order_by(RenderRow.id)
        .limit(limit)
    )
    return [RenderFiles(i, g, c, path, sidecar_of(path)) for i, g, c, path in rows]


async def scrub_scripts_before(session: AsyncSession, cutoff: datetime) -> int:
    """Blank the stored script text of finished renders created before `cutoff` (the row and its numbers stay);
    returns how many were blanked now."""
    result = await session.execute(
        update(RenderRow)
        .where(_old(cutoff), RenderRow.script != SCRUBBED)
        .values(script=SCRUBBED)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount
