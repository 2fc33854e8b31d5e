"""Running reference-clip decodes for the bot: one at a time process-wide, one in flight per uploader, each in a
resource-limited child process.

Why a child: libsndfile and its codecs parse hostile bytes; under RLIMIT_AS and RLIMIT_CPU (set by the child on itself
once numpy, soundfile and soxr are loaded) and a wall timeout, a decoder that balloons, spins or crashes costs one
refusal instead of the bot's memory or life. It adds ~0.3 s per upload (bench/clips.py), which an upload that then
waits for a GPU job does not notice. ``isolated=False`` decodes in a thread instead (same checks, same one-at-a-time).

Protocol: ``python -m bot.services.clip_intake LIMITS_JSON`` reads the upload on stdin and writes one JSON line, then
(when accepted) the clip as raw float32 little-endian samples.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

from bot.errors import BadAttachment
from bot.services.clips import Clip, ClipLimits, ClipRefused, decode_clip, shown_name

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]  # the child must import this very tree's bot/
MAX_WAITING = 8  # decodes queued behind the running one, all uploaders together
BUSY_UPLOADER = "Wait until your previous upload has been checked, then send this one again."
BUSY_EVERYONE = "Too many recordings are being checked right now; try again in a minute."


class ClipIntake:
    """The bot's one gate for reference uploads (create one per process and share it)."""

    def __init__(self, limits: ClipLimits, *, isolated: bool = True, max_waiting: int = MAX_WAITING) -> None:
        self.limits = limits
        self.isolated = isolated
        self.max_waiting = max_waiting
        self._one_at_a_time = asyncio.Semaphore(1)  # binds to the running loop on first use, not here
        self._uploaders: set[int] = set()
        self._pending = 0

    async def decode(self, data: bytes, filename: str, uploader: int | None = None) -> Clip:
        """The checked clip at 24 kHz, or BadAttachment with one sentence saying what to do."""
        if uploader is not None and uploader in self._uploaders:
            raise BadAttachment(BUSY_UPLOADER)
        if self._pending > self.max_waiting:
            raise BadAttachment(BUSY_EVERYONE)
        if uploader is not None:
            self._uploaders.add(uploader)
        self._pending += 1
        try:
            async with self._one_at_a_time:
                return await self._decode_one(data, filename)
        finally:
            self._pending -= 1
            self._uploaders.discard(uploader)

    async def _decode_one(self, data: bytes, filename: str) -> Clip:
        try:
            if self.isolated:
                return await decode_in_child(data, self.limits)
            return await asyncio.to_thread(decode_clip, data, self.limits)
        except ClipRefused as refused:
            log.info("reference %r refused: %s %s", shown_name(filename), refused.kind, refused.details)
            raise BadAttachment(refused.sentence(filename)) from None


async def decode_in_child(data: bytes, limits: ClipLimits) -> Clip:
    """``decode_clip`` in a resource-limited child; raises ClipRefused (``too_costly`` when the child was stopped)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.services.clip_intake",
        json.dumps(limits.as_json()),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_child_env(),
        cwd=str(REPO_ROOT),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(data), limits.timeout_s)
    except asyncio.TimeoutError:
        log.warning("reference decode stopped after %.0f s", limits.timeout_s)
        raise ClipRefused("too_costly") from None
    finally:
        if proc.returncode is None:  # timed out or cancelled: never leave a decoder running
            proc.kill()
            await proc.wait()
    return _parse_child_output(proc.returncode, out, err)


def _parse_child_output(returncode: int | None, out: bytes, err: bytes) -> Clip:
    header, _, samples = out.partition(b"\n")
    try:
        report = json.loads(header)
    except ValueError:
        report = None
    if returncode != 0 or not isinstance(report, dict):
        log.warning("reference decoder exited with %s: %s", returncode, err.decode(errors="replace")[-2000:])
        raise ClipRefused("too_costly")
    if not report["ok"]:
        raise ClipRefused(report["kind"], **report["details"])
    audio = np.frombuffer(samples, dtype="<f4").astype(np.float32)
    if len(audio) != report["samples"]:
        raise ClipRefused("too_costly")
    return Clip(audio, report["sample_rate"], report["seconds"], report["voiced_seconds"], report["source_rate"],
                report["channels"], report["format"])  # fmt: skip


def _child_env() -> dict[str, str]:
    """Only what Python needs: the decoder of hostile bytes never sees the bot token or other secrets in the env."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return env


# -- the child --------------------------------------------------------------------------------------------------------


def _limit_own_resources(limits: ClipLimits) -> None:
    """Cap this process at what it maps now plus ``memory_mb`` (RLIMIT_AS counts mappings, so the baseline of
    Python + numpy + libsndfile is measured, not guessed), at ``cpu_seconds`` of CPU, and at no file writes."""
    import resource

    with open("/proc/self/statm") as statm:
        mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    budget = mapped + limits.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (budget, budget))
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 5))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # it writes no files (stdout is a pipe, not counted)


def child_main(argv: list[str]) -> int:
    import soundfile  # noqa: F401  (loaded before the memory cap, so the cap measures it)
    import soxr  # noqa: F401

    limits = ClipLimits(**json.loads(argv[1]))
    if sys.platform.startswith("linux"):
        _limit_own_resources(limits)
    data = sys.stdin.buffer.read()
    out = sys.stdout.buffer
    try:
        clip = decode_clip(data, limits)
    except ClipRefused as refused:
        out.write(json.dumps({"ok": False, "kind": refused.kind, "details": refused.details}).encode() + b"\n")
        return 0
    except MemoryError:
        out.write(json.dumps({"ok": False, "kind": "too_costly", "details": {}}).encode() + b"\n")
        return 0
    report = {
        "ok": True,
        "samples": len(clip.audio),
        "sample_rate": clip.sample_rate,
        "seconds": clip.seconds,
        "voiced_seconds": clip.voiced_seconds,
        "source_rate": clip.source_rate,
        "channels": clip.channels,
        "format": clip.format,
    }
    out.write(json.dumps(report).encode() + b"\n")
    out.write(clip.audio.astype("<f4").tobytes())
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(child_main(sys.argv))
