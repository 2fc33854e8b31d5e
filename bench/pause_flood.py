"""The pause flood of issue 12: peak memory, queued voice and master bytes on disk while one `/say` of 600 s of
silence plays into a voice channel, without voice backpressure (the bound at its largest) vs with it (the default).

    .venv/bin/python bench/pause_flood.py [--seconds 10] [--json]

Each level runs in a fresh worker process (this file with ``--worker LIMIT``) so the RSS high-water marks do not mix.
The worker drives the bot's real services (SayService, Narrator, Production, Playback, PCMStreamSource) with the
scripted engine standing in for the model: the flood is pauses, which never reach the model. The voice connection is
a stand-in for discord.py's (outside our control) whose player thread reads one 20 ms frame every 20 ms, as a
channel nobody listens to still does. After ``--seconds`` of playing the flood is stopped (/stop).

Peak memory is the worker's VmHWM minus its RSS just before the /say (after imports and start-up). "before" is
``NARRATOR_MAX_BUFFERED_SECONDS`` at its largest (3600 s: the whole flood may queue, as before backpressure existed);
"after" is the default (30 s). Prints a table and the before/after ratios; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parent.parent
FLOOD = "[Pause 10s]" * 60 + "a"  # 600 s of silence: the most pause the largest NARRATOR_MAX_PAUSE_TOTAL_S allows
LEVELS = {"before": 3600.0, "after": 30.0}
GUILD, CHANNEL, USER = 10, 20, 1
log = logging.getLogger("bench.pause_flood")


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _voice_stand_in(guild):
    """discord.py's voice connection, outside our control: a player thread reading 20 ms frames at real time."""
    import discord

    class VoiceStandIn(discord.VoiceClient):
        def __init__(self) -> None:  # no gateway, no UDP
            self.played, self._stop, self._paused = None, threading.Event(), False

        guild = property(lambda self: guild_ref)
        source = property(lambda self: self.played)

        def is_connected(self) -> bool:
            return True

        def is_playing(self) -> bool:
            return self.played is not None and not self._paused

        def is_paused(self) -> bool:
            return self._paused

        def pause(self) -> None:
            self._paused = True

        def resume(self) -> None:
            self._paused = False

        def play(self, source, *, after=None, **options) -> None:
            self.played = source
            threading.Thread(target=self._player, args=(source,), daemon=True).start()

        def _player(self, source) -> None:
            next_at = time.monotonic()
            while not self._stop.is_set():
                if not self._paused and not source.read():
                    return
                next_at += 0.02
                time.sleep(max(0.0, next_at - time.monotonic()))

        async def disconnect(self, *, force: bool = False) -> None:
            self._stop.set()

    guild_ref = guild
    return VoiceStandIn()


class _Quiet:
    async def status(self, text: str) -> None: ...
    async def note(self, text: str) -> None: ...
    async def done(self, text: str, attachment) -> None: ...


async def _flood(limit_s: float, seconds: float, tmp: Path) -> dict:
    sys.path.insert(0, str(REPO))
    from bot.settings import Settings
    from db.engine import open_database
    from tests.scripted_engine import ScriptedEngine
    from tests.services import services_for

    settings = Settings(
        custom_voice_model="scripted/custom-voice", device="cpu", data_dir=tmp / "data", outputs_dir=tmp / "out",
        database_url=f"sqlite+aiosqlite:///{tmp / 'n.db'}", max_buffered_seconds=limit_s,
        max_buffered_seconds_total=max(limit_s, 600.0), max_pause_total_s=600.0, max_job_audio_s=900.0,
    )  # fmt: skip
    db = await open_database(settings.database_url)
    services = services_for(settings, db, [ScriptedEngine()])
    await services.start()
    guild = SimpleNamespace(id=GUILD)
    guild.voice_client = _voice_stand_in(guild)
    services.playback.client = SimpleNamespace(get_guild=lambda _id: guild, guilds=[guild])
    baseline = _rss_kib("VmRSS")
    request = await services.say.prepare(GUILD, CHANNEL, USER, set(), FLOOD, None)
    job, _ = await services.say.enqueue(request, _Quiet())
    queued, on_disk, started = [], [], time.monotonic()
    while time.monotonic() - started < seconds:
        queued.append(services.playback.queued_seconds(GUILD))
        on_disk.append(sum(p.stat().st_size for p in settings.outputs_dir.rglob("*") if p.is_file()))
        await asyncio.sleep(0.05)
    peak_kib = _rss_kib("VmHWM") - baseline
    services.queue.cancel(job)
    services.playback.stop(GUILD)
    await services.say.drain(timeout=10)
    await guild.voice_client.disconnect()
    await services.shutdown()
    await db.close()
    return {"limit_s": limit_s, "peak_mib": peak_kib / 1024, "queued_max_s": max(queued),
            "master_max_mb": max(on_disk) / 1e6}  # fmt: skip


def _worker(limit_s: float, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(asyncio.run(_flood(limit_s, seconds, Path(tmp)))))  # the parent reads this line


def _measure(limit_s: float, seconds: float) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", str(limit_s), "--seconds", str(seconds)],
                         capture_output=True, text=True, check=True, cwd=REPO)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the flood plays before /stop")
    parser.add_argument("--worker", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.worker is not None:
        _worker(args.worker, args.seconds)
        return
    results = {name: _measure(limit, args.seconds) for name, limit in LEVELS.items()}
    before, after = results["before"], results["after"]
    if not args.json:
        log.warning("%-7s %10s %12s %14s %16s", "level", "limit s", "peak MiB", "queued max s", "master max MB")
        for name, r in results.items():
            log.warning("%-7s %10.0f %12.1f %14.1f %16.1f", name, r["limit_s"], r["peak_mib"], r["queued_max_s"],
                        r["master_max_mb"])  # fmt: skip
    ratios = {
        "peak_memory_before_over_after": before["peak_mib"] / max(after["peak_mib"], 1e-3),
        "queued_before_over_after": before["queued_max_s"] / max(after["queued_max_s"], 1e-3),
        "master_before_over_after": before["master_max_mb"] / max(after["master_max_mb"], 1e-3),
    }
    print(json.dumps({"seconds": args.seconds, **results, **ratios}))


if __name__ == "__main__":
    main()
