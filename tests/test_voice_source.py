from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from discord.player import AudioPlayer

from bot.voice.source import FRAME_BYTES, SILENCE, PCMStreamSource, StereoUpsampler, upsample_utterance


def _s16(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").reshape(-1, 2)


@pytest.mark.parametrize("n", [1, 479, 480, 24_000, 24_001])
def test_upsample_doubles_length_and_duplicates_channels(n: int) -> None:
    audio = (0.3 * np.sin(np.arange(n) * 2 * np.pi * 440 / 24_000)).astype(np.float32)
    stereo = _s16(upsample_utterance(audio, 24_000))
    assert stereo.shape == (2 * n, 2)
    assert np.array_equal(stereo[:, 0], stereo[:, 1])


def test_upsample_keeps_the_tone_and_level() -> None:
    t = np.arange(24_000) / 24_000
    stereo = _s16(upsample_utterance((0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 24_000))
    left = stereo[:, 0].astype(np.float64) / 32767
    spectrum = np.abs(np.fft.rfft(left))
    assert np.argmax(spectrum) * 48_000 / len(left) == pytest.approx(440, abs=2)
    assert np.sqrt(np.mean(left[1000:-1000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


def test_upsample_clips_instead_of_wrapping() -> None:
    loud = np.full(2400, 3.0, dtype=np.float32)
    loud[::2] = -3.0  # full-scale square at Nyquist would ring; clipping must still saturate, never wrap
    left = _s16(upsample_utterance(loud, 24_000))[:, 0]
    assert left.max() <= 32767 and left.min() >= -32767
    flat = _s16(upsample_utterance(np.full(2400, 2.0, dtype=np.float32), 24_000))[:, 0]
    assert (flat[200:-200] == 32767).all()


def test_streaming_upsample_equals_whole_utterance() -> None:
    rng = np.random.default_rng(0)
    audio = (0.2 * rng.standard_normal(10_000)).astype(np.float32)
    up = StereoUpsampler(24_000)
    pieces = [up.push(audio[i : i + 1920]) for i in range(0, len(audio), 1920)] + [up.finish()]
    streamed = b"".join(pieces)
    assert len(streamed) == 2 * len(audio) * 4
    assert np.abs(_s16(streamed).astype(int) - _s16(upsample_utterance(audio, 24_000)).astype(int)).max() <= 1


def test_source_yields_exact_frames_then_pads_the_tail() -> None:
    src = PCMStreamSource(prebuffer_s=0, pace=False)
    payload = bytes(range(256)) * 40  # 10240 bytes = 2 frames + 2560
    src.feed("job", payload)
    first, second = src.read(), src.read()
    assert first == payload[:FRAME_BYTES] and second == payload[FRAME_BYTES : 2 * FRAME_BYTES]
    assert src.read() == SILENCE  # tail not ended yet: wait, with silence, rather than send half a frame
    src.end("job")
    tail = src.read()
    assert len(tail) == FRAME_BYTES and tail[:2560] == payload[2 * FRAME_BYTES :] and tail[2560:] == bytes(1280)
    assert src.read() == SILENCE and src.playing_tag is None
    assert src.audio_frames_read == 3


def test_source_is_silent_at_once_while_waiting_and_ends_on_close() -> None:
    src = PCMStreamSource()
    frames = []
    for _ in range(10):  # read at the player's pace: each read returns at once
        t0 = time.perf_counter()
        frames.append(src.read())
        assert time.perf_counter() - t0 < 0.005
        time.sleep(0.02)
    assert all(f == SILENCE for f in frames)
    src.close()
    assert src.read() == b""


def test_prebuffer_holds_back_until_enough_or_ended() -> None:
    src = PCMStreamSource(prebuffer_s=0.1, pace=False)  # 5 frames
    src.feed(1, b"\x01" * FRAME_BYTES * 3)
    assert src.read() == SILENCE
    src.feed(1, b"\x01" * FRAME_BYTES * 2)
    assert src.read() != SILENCE
    src2 = PCMStreamSource(prebuffer_s=0.1, pace=False)
    src2.feed(1, b"\x02" * FRAME_BYTES)
    src2.end(1)  # a short utterance plays without waiting for the prebuffer
    assert src2.read() == b"\x02" * FRAME_BYTES


def test_drop_skips_one_tag_and_drop_all_silences_everything() -> None:
    src = PCMStreamSource(prebuffer_s=0, pace=False)
    src.feed("a", b"\x0a" * FRAME_BYTES * 3)
    src.feed("b", b"\x0b" * FRAME_BYTES * 2)
    src.end("a")
    assert src.read() == b"\x0a" * FRAME_BYTES
    assert src.playing_tag == "a"
    assert src.drop("a") == 2 * FRAME_BYTES
    assert src.read() == b"\x0b" * FRAME_BYTES
    src.drop_all()
    assert src.read() == SILENCE and src.queued_seconds() == 0


class FakeVoiceClient:
    """Stands in for Discord's voice connection: records when each packet would have been sent."""

    timeout = 1.0

    def __init__(self) -> None:
        self.sent: list[tuple[float, bytes]] = []
        self.ws = self
        self.client = self
        self.loop = None

    def is_connected(self) -> bool:
        return True

    def send_audio_packet(self, data: bytes, encode: bool = True) -> None:
        self.sent.append((time.perf_counter(), data))

    async def speak(self, _state) -> None:  # pragma: no cover - scheduled on a loop we never run
        return None


def test_real_player_keeps_a_steady_cadence_across_a_model_stall() -> None:
    """discord.py's own AudioPlayer reading our source while the producer stalls for 0.5 s: no burst afterwards."""
    src = PCMStreamSource(prebuffer_s=0)
    voice = FakeVoiceClient()
    player = AudioPlayer(src, voice)  # type: ignore[arg-type]
    player._speak = lambda _state: None  # no event loop behind the fake voice client
    player.start()

    def produce() -> None:
        src.feed(1, b"\x11" * FRAME_BYTES * 10)
        time.sleep(0.5)  # the "GPU" is slow here
        src.feed(1, b"\x11" * FRAME_BYTES * 10)
        src.end(1)

    producer = threading.Thread(target=produce)
    producer.start()
    producer.join()
    time.sleep(0.4)
    src.close()
    player.join(2)
    times = np.array([t for t, d in voice.sent if len(d) == FRAME_BYTES])
    audio = [d for _, d in voice.sent if d == b"\x11" * FRAME_BYTES]
    gaps = np.diff(times) * 1000
    assert len(audio) == 20
    assert len(times) >= 40  # silence filled the stall instead of blocking
    assert (gaps < 5).sum() <= 2, f"burst: {np.sort(gaps)[:10]}"
    assert np.median(gaps) == pytest.approx(20, abs=2)


class StarvedVoiceClient(FakeVoiceClient):
    """The player thread loses the CPU for 300 ms once (GIL or a busy machine), inside a send."""

    def __init__(self) -> None:
        super().__init__()
        self.stalled = False

    def send_audio_packet(self, data: bytes, encode: bool = True) -> None:
        super().send_audio_packet(data, encode)
        if len(self.sent) == 10 and not self.stalled:
            self.stalled = True
            time.sleep(0.3)


@pytest.mark.parametrize("pace", [True, False])
def test_a_starved_player_does_not_burst_with_pacing(pace: bool) -> None:
    src = PCMStreamSource(prebuffer_s=0, pace=pace)
    src.feed(1, b"\x22" * FRAME_BYTES * 40)
    src.end(1)
    voice = StarvedVoiceClient()
    player = AudioPlayer(src, voice)  # type: ignore[arg-type]
    player._speak = lambda _state: None
    player.start()
    time.sleep(1.2)
    src.close()
    player.join(2)
    times = np.array([t for t, d in voice.sent if len(d) == FRAME_BYTES])
    gaps = np.diff(times) * 1000
    bursts = int((gaps < 10).sum())
    if pace:
        assert bursts == 0, f"burst after the stall: {np.sort(gaps)[:8]}"
    else:
        assert bursts >= 10  # discord.py alone catches up back-to-back: what the pacing prevents


# -- gapless start, backpressure hold, idle ----------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def play_production(rate: float, seconds: float, *, bound_s: float, chunk_s: float = 0.16, first_s: float = 0.3):
    """A producer at `rate` x real time (first chunk after `first_s`) feeding one segment of `seconds`, read every
    20 ms of simulated time. Returns (frames read, index of the first audio frame, source)."""
    clock = Clock()
    src = PCMStreamSource(pace=False, clock=clock)
    src.begin_segment("job", bound_s)
    pattern = np.arange(int(seconds * 48_000), dtype=np.int64) % 30_000 + 1  # never zero: silence is visible
    pcm = np.repeat(pattern.astype("<i2"), 2).tobytes()
    chunk = int(chunk_s * 48_000) * 4
    due = [(first_s + (i // chunk + 1) * chunk_s / rate, pcm[i : i + chunk]) for i in range(0, len(pcm), chunk)]
    frames = []
    for step in range(int((first_s + seconds / rate + seconds + 2) / 0.02)):
        clock.now = step * 0.02
        while due and due[0][0] <= clock.now:
            src.feed("job", due.pop(0)[1])
            if not due:
                src.end("job")
        frames.append(src.read())
    audio = [i for i, f in enumerate(frames) if f != SILENCE]
    return frames, audio, pcm, src


@pytest.mark.parametrize("rate", [0.4, 0.7, 0.95])
def test_a_slow_render_starts_later_and_never_runs_dry_inside_its_segment(rate: float) -> None:
    frames, audio, pcm, src = play_production(rate, 4.0, bound_s=4.0)
    assert src.underruns == 0
    assert audio == list(range(audio[0], audio[0] + len(audio))), "silence inside the segment"
    assert b"".join(frames[audio[0] : audio[-1] + 1])[: len(pcm)] == pcm  # heard = produced, nothing lost
    start_s = audio[0] * 0.02
    assert start_s >= 0.3 + 4.0 * (1 - rate) - 0.2  # it waited for the part the engine could not make in time
    assert start_s <= 0.3 + 4.0 / rate  # ... but not for the whole segment to finish (it has a bound)


def test_a_render_that_keeps_up_starts_at_once() -> None:
    _, audio, _, src = play_production(3.0, 4.0, bound_s=8.0)
    # within 0.3 s of its first chunk: the speed is measured from when the segment began (the 0.3 s to the first
    # chunk count against it), so it takes a few chunks to prove the device keeps up
    assert audio[0] * 0.02 <= 0.3 + 0.3
    assert src.underruns == 0


def test_without_a_segment_plan_a_slow_render_stutters() -> None:
    """The same slow production with no segment bound: only the prebuffer, so it runs dry (what the plan fixes)."""
    _, _, _, src = play_production(0.5, 4.0, bound_s=0.0)
    assert src.underruns > 3


def test_the_next_segment_waits_at_its_boundary_not_inside_it() -> None:
    clock = Clock()
    src = PCMStreamSource(prebuffer_s=0, pace=False, clock=clock)
    src.begin_segment(1, 0.03)  # 1.5 frames
    src.feed(1, b"\x01\x00" * (FRAME_BYTES // 2 + FRAME_BYTES // 4))
    src.begin_segment(1, 10.0)  # a long segment with one small chunk so far: not ready
    src.feed(1, b"\x02\x00" * (FRAME_BYTES // 2))
    assert src.read() == b"\x01\x00" * (FRAME_BYTES // 2)
    assert src.read() == b"\x01\x00" * (FRAME_BYTES // 4) + bytes(FRAME_BYTES // 2)  # segment 1's tail, padded
    assert src.read() == SILENCE and src.underruns == 0  # waiting at the boundary is not running dry
    src.end(1)
    assert src.read() == b"\x02\x00" * (FRAME_BYTES // 2)


def test_a_segment_held_back_by_backpressure_starts_anyway() -> None:
    src = PCMStreamSource(pace=False, clock=Clock())
    src.begin_segment(1, 60.0)
    src.feed(1, b"\x03" * FRAME_BYTES * 5)
    assert src.read() == SILENCE  # no speed measured yet: the plan waits
    src.hold(1, True)  # the producer may not queue more: waiting could bring nothing
    assert src.read() == b"\x03" * FRAME_BYTES


def test_dropped_tags_ignore_late_chunks_and_ended_tracks_release_the_stream() -> None:
    src = PCMStreamSource(prebuffer_s=0, pace=False)
    src.feed("skipped", b"\x04" * FRAME_BYTES)
    src.drop("skipped")
    src.feed("skipped", b"\x04" * FRAME_BYTES)  # a chunk that was already on its way
    assert src.read() == SILENCE and src.idle
    src.feed("failed", b"\x05" * 100)  # a render that failed after a partial frame
    src.feed("next", b"\x06" * FRAME_BYTES)
    src.end("failed")  # every ending path ends its tag
    src.end("next")
    assert src.read() == b"\x05" * 100 + bytes(FRAME_BYTES - 100)
    assert src.read() == b"\x06" * FRAME_BYTES


def test_idle_is_reported_once_after_the_stream_empties() -> None:
    calls = []
    src = PCMStreamSource(prebuffer_s=0, pace=False)
    src.on_idle = lambda: calls.append(src.frames_read)
    src.feed(1, b"\x07" * FRAME_BYTES)
    for _ in range(20):
        src.read()
    assert not calls  # a render that has not ended is not idle, even with nothing queued just now
    src.end(1)
    for _ in range(40):
        src.read()
    assert len(calls) == 1 and calls[0] >= 10  # after the audio, once
    src.feed(2, b"\x07" * FRAME_BYTES * 50)
    src.begin_segment(3, 100.0)
    for _ in range(60):
        src.read()
    assert len(calls) == 1  # queued or waiting audio is not idle


def test_pacing_lets_a_starved_player_catch_up_with_its_schedule_without_bursting() -> None:
    """discord.py's player loop (its schedule formula) on a simulated clock, stalled for 300 ms once: the reads are
    spaced, never back-to-back, and the stream is back on time soon after (a listener's jitter buffer refills)."""
    clock = Clock()
    src = PCMStreamSource(prebuffer_s=0)
    src._perf_counter = clock
    src._sleep = lambda seconds: setattr(clock, "now", clock.now + seconds)
    src.feed(1, b"\x22" * FRAME_BYTES * 200)
    sent = []
    for loops in range(1, 120):
        if loops == 10:
            clock.now += 0.3  # the player thread lost the CPU
        src.read()
        sent.append(clock.now)
        clock.now += max(0.0, 0.02 + 0.02 * loops - clock.now)  # AudioPlayer._do_run's sleep
    times = np.array(sent)
    lateness = (times - times[0] - 0.02 * np.arange(len(times))) * 1000
    assert lateness.max() - lateness[1] >= 290 and abs(lateness[-1] - lateness[1]) <= 1.0, lateness[-5:]
    assert np.diff(times).min() >= 0.012 - 1e-9


def test_pacing_forgives_a_stall_too_long_to_catch_up() -> None:
    """Stalled for 2 s, the player would rush 100 frames out; the stream goes on at 20 ms instead (no receiver
    could hold the rush)."""
    clock = Clock()
    src = PCMStreamSource(prebuffer_s=0)
    src._perf_counter = clock
    src._sleep = lambda seconds: setattr(clock, "now", clock.now + seconds)
    src.feed(1, b"\x22" * FRAME_BYTES * 300)
    sent = []
    for loops in range(1, 200):
        if loops == 10:
            clock.now += 2.0
        src.read()
        sent.append(clock.now)
        clock.now += max(0.0, 0.02 + 0.02 * loops - clock.now)
    gaps = np.diff(np.array(sent[10:]))
    assert gaps.min() >= 0.02 - 1e-9, np.sort(gaps)[:5]
