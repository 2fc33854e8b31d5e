"""What the guild hears: 24 kHz mono float from the model -> 48 kHz stereo s16le 20 ms frames for discord.py.

Two pieces, both tested in tests/test_voice_source.py:

- `StereoUpsampler`, the ONE resampler: float32 mono (N,) at 24 kHz -> interleaved int16 stereo bytes at 48 kHz
  (2N samples per channel, 4 bytes per 48 kHz sample pair), streaming through soxr so chunk joins are seamless.
- `PCMStreamSource`, one long-lived `discord.AudioSource` per guild. The player thread calls `read()` every 20 ms; it
  returns exactly `FRAME_BYTES` (3840) bytes: buffered audio when there is some, otherwise silence at once. It never
  blocks for long, because the player would later burst the backlog out (discord-voice.md §1.5). Audio is queued per
  tag (a job id), so `/skip` drops one job's audio and `/stop` all of it, and the next `read()` is already silent.
"""

from __future__ import annotations

import collections
import logging
import threading
import time

import discord
import numpy as np

log = logging.getLogger(__name__)

DISCORD_SAMPLE_RATE = 48_000
CHANNELS = 2
SAMPLE_BYTES = 2
FRAME_MS = 20
FRAME_SAMPLES = DISCORD_SAMPLE_RATE * FRAME_MS // 1000  # 960 per channel
FRAME_BYTES = FRAME_SAMPLES * CHANNELS * SAMPLE_BYTES  # 3840
SILENCE = bytes(FRAME_BYTES)
FRAME_S = FRAME_MS / 1000
BURST_GAP_S = 0.015  # reads closer than this are a catch-up burst (normal jitter stays well above it)
BYTES_PER_SECOND = DISCORD_SAMPLE_RATE * CHANNELS * SAMPLE_BYTES


class StereoUpsampler:
    """Streaming 24 kHz mono float32 -> 48 kHz stereo int16 (little-endian, interleaved L R L R ...).

    `push(chunk)` returns what soxr can emit so far; `finish()` flushes the filter tail. Over a whole utterance the
    output has exactly 2 * N samples per channel for N input samples. Values are clipped to [-1, 1] before scaling,
    so a loud sample saturates at +/-32767 instead of wrapping around.
    """

    def __init__(self, in_rate: int, out_rate: int = DISCORD_SAMPLE_RATE) -> None:
        import soxr

        self._stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ")

    @staticmethod
    def to_stereo_s16(mono: np.ndarray) -> bytes:
        """(N,) float at the output rate -> N * 4 bytes of interleaved int16 stereo."""
        pcm = np.round(np.clip(mono, -1.0, 1.0) * 32767.0).astype("<i2")
        return np.repeat(pcm, CHANNELS).tobytes()

    def push(self, chunk: np.ndarray) -> bytes:
        chunk = np.ascontiguousarray(chunk, dtype=np.float32).reshape(-1)
        return self.to_stereo_s16(self._stream.resample_chunk(chunk))

    def finish(self) -> bytes:
        return self.to_stereo_s16(self._stream.resample_chunk(np.zeros(0, np.float32), last=True))


def upsample_utterance(audio: np.ndarray, in_rate: int) -> bytes:
    """A whole mono utterance at `in_rate` (the engine's, 24 kHz) -> 48 kHz stereo s16le bytes."""
    upsampler = StereoUpsampler(in_rate)
    return upsampler.push(audio) + upsampler.finish()


class PCMStreamSource(discord.AudioSource):
    """A never-ending per-guild source: queued audio in exact 20 ms frames, silence when there is none.

    Thread-safe: `feed`, `end`, `drop` and `drop_all` are called from the event loop, `read` from the player thread.
    A tag's last partial frame is zero-padded once `end(tag)` says no more audio comes for it.
    `prebuffer_s`: after running dry, wait until this much audio is queued (or the tag has ended) before speaking
    again, so a model that is barely faster than real time gives one short pause instead of many stutters.
    `pace`: hold back reads that come in a catch-up burst (see `_pace`); off only for tests of the frame logic.
    """

    def __init__(self, prebuffer_s: float = 0.2, *, pace: bool = True) -> None:
        self._lock = threading.Lock()
        self._queue: collections.deque[list] = collections.deque()  # [tag, bytearray, ended]
        self._prebuffer = int(prebuffer_s * BYTES_PER_SECOND)
        self._dry = True
        self._closed = False
        self._pace_reads = pace
        self._last_read: float | None = None  # perf_counter of the previous read (player thread only)
        self.frames_read = 0
        self.audio_frames_read = 0

    # -- producer side (event loop) --------------------------------------------------------------------------------

    def feed(self, tag: object, pcm: bytes) -> None:
        """Queue 48 kHz stereo s16le bytes for `tag` (a job id); any length, frames are cut at read time."""
        if not pcm:
            return
        with self._lock:
            entry = self._entry(tag)
            entry[1].extend(pcm)

    def end(self, tag: object) -> None:
        """No more audio for `tag`: its tail is padded to a whole frame and played out."""
        with self._lock:
            for entry in self._queue:
                if entry[0] == tag:
                    entry[2] = True

    def drop(self, tag: object) -> int:
        """Forget `tag`'s queued audio (skip); returns the bytes dropped. The next read is already past it."""
        with self._lock:
            dropped = sum(len(e[1]) for e in self._queue if e[0] == tag)
            self._queue = collections.deque(e for e in self._queue if e[0] != tag)
            return dropped

    def drop_all(self) -> int:
        with self._lock:
            dropped = sum(len(e[1]) for e in self._queue)
            self._queue.clear()
            self._dry = True
            return dropped

    def close(self) -> None:
        """End the stream: the player's next read gets b'' and stops."""
        with self._lock:
            self._closed = True
            self._queue.clear()

    @property
    def playing_tag(self) -> object | None:
        """The tag whose audio the listener hears now (or hears next), None when only silence is queued."""
        with self._lock:
            return self._queue[0][0] if self._queue else None

    def queued_seconds(self, tag: object | None = None) -> float:
        with self._lock:
            total = sum(len(e[1]) for e in self._queue if tag is None or e[0] == tag)
        return total / BYTES_PER_SECOND

    def has_audio(self, tag: object) -> bool:
        with self._lock:
            return any(e[0] == tag for e in self._queue)

    # -- consumer side (player thread) -----------------------------------------------------------------------------

    def read(self) -> bytes:
        if self._pace_reads:
            self._pace()
        with self._lock:
            if self._closed:
                return b""
            self.frames_read += 1
            frame = self._next_frame()
        if frame is None:
            return SILENCE
        self.audio_frames_read += 1
        return frame

    def _pace(self) -> None:
        """Refuse to be read in a burst. discord.py's player keeps a schedule anchored at its start, so after its
        thread was starved (GIL, CPU) it asks for the missed frames back-to-back; we hold each such read until a
        frame's time has passed since the previous one, so the listener gets one late packet, never a burst."""
        now = time.perf_counter()
        if self._last_read is not None:
            since = now - self._last_read
            if since < BURST_GAP_S:
                time.sleep(FRAME_S - since)
                now = time.perf_counter()
        self._last_read = now

    def is_opus(self) -> bool:
        return False

    def cleanup(self) -> None:
        # The player calls this when it stops (disconnect, stop()); the guild's stream object itself stays reusable
        # only through a new PCMStreamSource, so there is nothing to release here. Idempotent by design.
        log.debug("voice source cleaned up after %d frames (%d with audio)", self.frames_read, self.audio_frames_read)

    # -- internals (lock held) -------------------------------------------------------------------------------------

    def _entry(self, tag: object) -> list:
        for entry in self._queue:
            if entry[0] == tag:
                return entry
        entry = [tag, bytearray(), False]
        self._queue.append(entry)
        return entry

    def _ready(self) -> bool:
        if not self._dry:
            return True
        queued = sum(len(e[1]) for e in self._queue)
        if queued >= self._prebuffer or any(e[2] for e in self._queue):
            self._dry = False
        return not self._dry

    def _next_frame(self) -> bytes | None:
        while self._queue and self._queue[0][2] and not self._queue[0][1]:
            self._queue.popleft()  # an ended tag with nothing left
        if not self._queue or not self._ready():
            return None
        tag, data, ended = self._queue[0]
        if len(data) >= FRAME_BYTES:
            frame = bytes(data[:FRAME_BYTES])
            del data[:FRAME_BYTES]
        elif ended:
            frame = bytes(data) + bytes(FRAME_BYTES - len(data))
            data.clear()
        else:
            self._dry = True  # ran dry mid-utterance: prebuffer again before speaking on
            return None
        if ended and not data:
            self._queue.popleft()
        return frame
