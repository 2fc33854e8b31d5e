"""What the listener hears, against the real bot and the fake Discord: every way a render ends releases the guild's
stream (a device fault, a timeout); a device slower than real time is heard without a gap, only later; a pause
flood is held back by backpressure; an idle stream sends no packets and the bot leaves after the idle time.

Faults and slowness are injected at the engine boundary only (the device, outside our control): `DeviceFault`
and `SlowDevice` wrap the bot's real `LocalEngine` and run every frame through it; the narrator, the render service
and the voice stream under test are the bot's own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Iterator

import numpy as np
import pytest
import pytest_asyncio

from tests.e2e.conftest import ADMIN, GUILD, MEMBER, Narrator, packets_since, sidecar, wait_for_master, wait_for_quiet
from tests.fakediscord.audio import audible_span, listen, match_segments
from tests.fakediscord.harness import wait_until
from tests.fakediscord.server import FakeDiscord

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.asyncio,
    pytest.mark.timeout(1200),
]  # the tiny checkpoints build first (minutes on a busy machine)
log = logging.getLogger(__name__)

SHORT = "[Calm] Back again, all is well."
LONG = "This is a long line that keeps the narrator talking for quite a while. " * 3
SAMPLE_RATE = 24_000


class DeviceFault:
    """The real engine on a device that fails mid-render once (what a CUDA fault looks like from Python)."""

    def __init__(self, engine, after_chunks: int) -> None:
        self.engine, self.after_chunks, self.armed = engine, after_chunks, True

    def __getattr__(self, name: str):
        return getattr(self.engine, name)

    def stream(self, request, stop) -> Iterator[np.ndarray]:
        for index, chunk in enumerate(self.engine.stream(request, stop)):
            if self.armed and index == self.after_chunks:
                self.armed = False
                raise RuntimeError("CUDA error: an illegal memory access was encountered")
            yield chunk


class SlowDevice:
    """The real engine on a device that delivers audio at `speed` x real time at most (a busy GPU): each chunk is
    released no earlier than its audio could have been made at that speed."""

    def __init__(self, engine, speed: float) -> None:
        self.engine, self.speed = engine, speed
        self.audio_s = self.busy_s = 0.0

    def __getattr__(self, name: str):
        return getattr(self.engine, name)

    def stream(self, request, stop) -> Iterator[np.ndarray]:
        started, made = time.monotonic(), 0.0
        for chunk in self.engine.stream(request, stop):
            made += len(chunk) / self.engine.audio.sample_rate
            time.sleep(max(0.0, started + made / self.speed - time.monotonic()))
            yield chunk
        self.audio_s += made
        self.busy_s += time.monotonic() - started


@pytest_asyncio.fixture
async def start_bot(fake_discord: FakeDiscord, e2e_settings) -> AsyncIterator:
    """start(**settings overrides) -> a running Narrator (stopped after the test)."""
    fake_discord.add_guild(GUILD, [ADMIN, MEMBER])
    runners: list[Narrator] = []

    async def start(**overrides) -> Narrator:
        runner = Narrator(fake_discord, dataclasses.replace(e2e_settings, **overrides))
        await runner.start()
        runners.append(runner)
        return runner

    try:
        yield start
    finally:
        for runner in runners:
            await runner.stop()


def device(narrator: Narrator):
    """The bot's narrator on its (only) worker: its `engine` is the device boundary."""
    return narrator.bot.services.workers[0].narrator


async def heard_in_full(narrator: Narrator, script: str = SHORT) -> None:
    """A /say whose master reaches the voice channel whole: its own audio from the start (the stream is not stuck
    behind an earlier render), and as much audio as the master holds. Whether a busy machine inserted a gap inside it
    is the gapless test's business (a device slowed on purpose), not this one's."""
    fake = narrator.fake
    sent = await narrator.say(script)
    master, rate, _ = await wait_for_master(sent, timeout=150)  # a busy 2-core machine renders slowly
    await wait_for_quiet(fake, GUILD)
    stream = audible_span(packets_since(fake, GUILD, sent.sent_at))
    head = match_segments(stream, master, rate, [min(1.5, len(master) / rate)])
    heard_s = sum(p.audible for p in stream) * 0.02
    loud_s = float(np.mean(np.abs(master) > 0.01)) * len(master) / rate  # ~ what is audible of the master
    log.info("heard %.2f s audible (span %.2f s) of a %.2f s master (%.2f s loud): head correlation %s", heard_s,
             len(stream) * 0.02, len(master) / rate, loud_s, [round(m.correlation, 3) for m in head])  # fmt: skip
    assert head and head[0].correlation >= 0.9, head
    assert heard_s >= 0.9 * loud_s, "part of the master was never heard"


# Every way a render ends releases the stream (issue 13) ---------------------------------------------------------------
async def test_a_failed_and_a_timed_out_render_each_release_the_stream(start_bot) -> None:
    # A short /say takes up to ~50 s on a 2-core machine with both cores busy elsewhere: the timeout leaves it room.
    narrator = await start_bot(job_timeout_s=120.0)
    fake = narrator.fake
    fault = DeviceFault(device(narrator).engine, after_chunks=3)
    device(narrator).engine = fault

    failed = await narrator.say(LONG)
    await wait_until(lambda: any("failed" in t for t in failed.texts), 120, "the failure report")
    assert not fault.armed, "the device fault never happened"
    assert narrator.render_statuses() == [(ADMIN, "failed")]
    await wait_for_quiet(fake, GUILD)  # what it had queued before the fault plays out, then the stream is free
    await heard_in_full(narrator)

    real = device(narrator).engine
    device(narrator).engine = SlowDevice(real, speed=0.02)  # a stalling device: the render cannot end in time
    timed_out = await narrator.say(SHORT)  # short enough to be accepted, far too slow to end within the timeout
    await wait_until(lambda: any("longer than" in t for t in timed_out.texts), 240, "the timeout")
    device(narrator).engine = real
    assert [s for _, s in narrator.render_statuses()] == ["failed", "done", "failed"]  # a timeout is a failure
    # At 0.02x real time gapless playback had held the segment back; what it made plays out once the job has ended.
    playback = narrator.bot.services.playback
    await wait_until(lambda: playback.queued_seconds(GUILD) == 0, 120, "the timed-out render's audio to play out")
    await wait_for_quiet(fake, GUILD)
    await heard_in_full(narrator)


# Gapless playback (issue 14) ------------------------------------------------------------------------------------------
async def test_a_device_slower_than_real_time_is_heard_whole_only_later(start_bot) -> None:
    narrator = await start_bot()
    fake = narrator.fake
    slow = SlowDevice(device(narrator).engine, speed=0.5)
    device(narrator).engine = slow

    sent = await narrator.say("[Calm] " + "Slow and steady, every word in its place. " * 2)
    master, rate, name = await wait_for_master(sent, timeout=180)
    await wait_for_quiet(fake, GUILD)
    assert slow.audio_s > 0 and slow.audio_s / slow.busy_s < 0.8, "the device was not slower than real time"
    packets = packets_since(fake, GUILD, sent.sent_at)
    stream = audible_span(packets)
    (segment,) = [seg["seconds"] for seg in sidecar(narrator.settings, name)["segments"]]
    (match,) = match_segments(stream, master, rate, [segment])
    hearing = listen(packets, jitter_ms=100.0)
    log.info("slow device (%.2fx): first audio %.2f s after /say, heard %.2f s of %.2f s, correlation %.3f; %s",
             slow.audio_s / slow.busy_s, stream[0].at - sent.sent_at, len(stream) * 0.02, len(master) / rate,
             match.correlation, hearing.describe())  # fmt: skip
    assert match.correlation > 0.9, match
    # no silence inside the segment: what was heard, from its first sound to its last, is as long as the master
    assert abs(len(stream) * 0.02 - len(master) / rate) <= 0.25
    assert not hearing.stutters and hearing.bursts == 0, f"{hearing.describe()}, late by {hearing.late_ms} ms"


# Backpressure (issue 12) ----------------------------------------------------------------------------------------------
async def test_a_pause_flood_is_held_back_by_backpressure(start_bot) -> None:
    limit = 5.0
    # The operator's largest pause allowance (NARRATOR_MAX_PAUSE_TOTAL_S=600, audio per job to match): 600 s of
    # silence that renders at once, the flood of issue 12 within what a script may now hold.
    narrator = await start_bot(max_buffered_seconds=limit, max_pause_total_s=600.0, max_job_audio_s=900.0)
    playback = narrator.bot.services.playback
    sent = await narrator.say("[Pause 10s]" * 60 + "a")
    await wait_until(lambda: sent.deferred, 30, "the /say to be accepted")
    await wait_until(lambda: playback.queued_seconds(GUILD) > 0, 60, "the flood to reach voice")

    queued, written = [], []
    deadline = time.monotonic() + 8.0
    while time.monotonic() < deadline:
        queued.append(playback.queued_seconds(GUILD))
        written.append(sum(p.stat().st_size for p in narrator.settings.outputs_dir.rglob("*") if p.is_file()))
        await asyncio.sleep(0.1)
    log.info("pause flood: queued for voice max %.2f s, master on disk max %.1f MB", max(queued), max(written) / 1e6)
    assert max(queued) <= limit + 1.0  # the bound plus one feed piece
    # the render is held, not racing ahead: its master (24 kHz) holds at most the queued audio plus the hand-off
    assert max(written) <= (limit + 1.0 + 5.0 + 10.0) * SAMPLE_RATE * 4, max(written)
    assert narrator.render_statuses() == [(ADMIN, "running")]
    stop = await narrator.fake.command(GUILD, ADMIN, "stop")
    await wait_until(stop.answered, 10, "the /stop answer")
    await wait_until(lambda: narrator.render_statuses() == [(ADMIN, "cancelled")], 30, "the flood to be cancelled")


# Idle voice (issue 12) ------------------------------------------------------------------------------------------------
async def test_an_idle_stream_sends_nothing_resumes_for_the_next_audio_and_leaves_after_the_idle_time(start_bot):
    narrator = await start_bot(voice_idle_leave_s=6.0)
    fake = narrator.fake
    sent = await narrator.say(SHORT)
    await wait_for_master(sent)
    await wait_for_quiet(fake, GUILD, quiet_s=0.3)
    await asyncio.sleep(1.0)
    speaking = [op["d"]["speaking"] for g, op in fake.voice_ops if g == GUILD and op.get("op") == 5]
    last = fake.udp.guild_packets(GUILD)[-1].at
    await asyncio.sleep(1.0)
    assert not packets_since(fake, GUILD, last + 0.001), "packets kept coming while nothing was queued"
    assert speaking[-1] == 0, speaking  # speaking off while idle

    await heard_in_full(narrator)  # the next audio resumes the paused player
    quiet_since = fake.udp.guild_packets(GUILD)[-1].at
    await wait_until(lambda: fake.bot_voice_channel(GUILD) is None, 30, "the bot to leave after the idle time")
    idle_s = time.monotonic() - quiet_since
    assert 5.0 <= idle_s <= 12.0, idle_s
    await heard_in_full(narrator)  # a /say after the idle leave joins again
