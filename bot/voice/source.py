"""What the guild hears: 24 kHz mono float from the model -> 48 kHz stereo s16le 20 ms frames for discord.py.

Two pieces, both tested in tests/test_voice_source.py:

- `StereoUpsampler`, the ONE resampler: float32 mono (N,) at 24 kHz -> interleaved int16 stereo bytes at 48 kHz
  (2N samples per channel, 4 bytes per 48 kHz sample pair), streaming through soxr so chunk joins are seamless.
- `PCMStreamSource`, one long-lived `discord.AudioSource` per guild. The player thread calls `read()` every 20 ms; it
  returns exactly `FRAME_BYTES` (3840) bytes: buffered audio when a segment may play, otherwise silence at once. It
  never blocks for long, because the player would later burst the backlog out (discord-voice.md §1.5). Audio is
  queued per tag (a job id) in a `Track` (bot/voice/tracks.py: segment boundaries and the gapless start), so
  `/skip` drops one job's audio and `/stop` all of it, and the next `read()` is already silent. When nothing has
  been queued for a moment it tells its owner (`on_idle`), which pauses the player: no packets while idle.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable

import discord
import numpy as np

from bot.voice.tracks import BYTES_PER_SECOND, Track

log = logging.getLogger(__name__)

DISCORD_SAMPLE_RATE = 48_000
CHANNELS = 2
SAMPLE_BYTES = 2
FRAME_MS = 20
FRAME_SAMPLES = DISCORD_SAMPLE_RATE * FRAME_MS // 1000  # 960 per channel
FRAME_BYTES = FRAME_SAMPLES * CHANNELS * SAMPLE_BYTES  # 3840
SILENCE = bytes(FRAME_BYTES)
FRAME_S = FRAME_MS / 1000
# Reads closer together than this are a catch-up burst; each is held to this spacing. Shorter than a frame, so a
# player that was starved catches up with its schedule at 1.7x real time (a listener's jitter buffer refills) instead
# of staying late forever, and never back-to-back (which a receiver cannot hold).
CATCH_UP_GAP_S = 0.012
# A player more than this late is not caught up (a listener's buffer could not hold the rush): the debt is forgiven
# and the stream goes on at 20 ms from where it is.
MAX_CATCH_UP_S = 0.5
# The player thread asks to run before ordinary work (Linux per-thread nice; allowed for root or with CAP_SYS_NICE,
# otherwise it keeps its priority): it needs little CPU but must get it within a few ms every 20 ms on a busy host.
PLAYER_NICE = -10
assert BYTES_PER_SECOND == DISCORD_SAMPLE_RATE * CHANNELS * SAMPLE_BYTES
# Reads with nothing queued before the stream counts as idle: 200 ms lets the codec ring down after the last word
# and the closing frames go out, then the owner may pause the player (no packets while nobody speaks).
IDLE_FRAMES = 10
DROPPED_MEMORY = 64  # dropped tags remembered, so a late chunk of a skipped render is not heard


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
    """A long-lived per-guild source: queued audio in exact 20 ms frames, silence while a render is not ready.

    Thread-safe: `feed`, `begin_segment`, `end`, `drop` and `drop_all` are called from the event loop, `read` from
    the player thread. Audio is kept per tag (a job id) in a `Track`, played in the order the tags first fed.
    A tag's last partial frame is zero-padded once `end(tag)` says no more audio comes for it; a dropped tag ignores
    later feeds (a chunk already on its way when /skip ran is never heard).
    `prebuffer_s`: the least audio held before a segment starts (on top of the gapless plan, see bot/voice/tracks.py).
    `pace`: hold back reads that come in a catch-up burst (see `_pace`); off only for tests of the frame logic.
    `on_idle`: called (from the player thread) once the stream has had nothing queued for `IDLE_FRAMES` reads, so
    the owner can pause the player instead of sending silence packets nobody needs.
    """

    def __init__(
        self, prebuffer_s: float = 0.2, *, pace: bool = True, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock  # when audio arrived and is read: production speed is measured against it
        self._tracks: collections.deque[Track] = collections.deque()
        self._dropped: collections.deque[object] = collections.deque(maxlen=DROPPED_MEMORY)
        self._prebuffer = int(prebuffer_s * BYTES_PER_SECOND)
        self._closed = False
        self._pace_reads = pace
        self._last_read: float | None = None  # perf_counter of the previous read (player thread only)
        self._perf_counter, self._sleep = time.perf_counter, time.sleep  # the player's clock (tests simulate it)
        self._due: float | None = None  # when the next read is due on our own 20 ms schedule (player thread only)
        self._player_thread: int | None = None
        self._empty_reads = 0
        self.on_idle: Callable[[], None] | None = None
        self.frames_read = 0
        self.audio_frames_read = 0
        self.underruns = 0  # a segment ran dry after it had started (what the gapless gate exists to prevent)

    # -- producer side (event loop) --------------------------------------------------------------------------------

    def feed(self, tag: object, pcm: bytes, made_at: float | None = None) -> None:
        """Queue 48 kHz stereo s16le bytes for `tag` (a job id); any length, frames are cut at read time.
        `made_at`: when the producer made it (its clock, time.monotonic), which is what production speed is measured
        by; the arrival here can be much later on a busy event loop."""
        if not pcm:
            return
        with self._lock:
            if tag in self._dropped:
                return
            self._track(tag).feed(self._clock() if made_at is None else made_at, pcm)
            self._empty_reads = 0

    def begin_segment(self, tag: object, bound_s: float, began_at: float | None = None) -> None:
        """The audio `tag` feeds from now on is a new segment of its script, `bound_s` seconds long at most, whose
        production began at `began_at` (the producer's time.monotonic; default now)."""
        with self._lock:
            if tag not in self._dropped:
                began = self._clock() if began_at is None else began_at
                self._track(tag).begin_segment(began, int(max(0.0, bound_s) * BYTES_PER_SECOND))

    def hold(self, tag: object, held: bool, waited_s: float = 0.0) -> None:
        """`tag`'s producer is (`held`) or was held back by backpressure; `waited_s` of that was not production
        time for its measured rate."""
        with self._lock:
            track = self._find(tag)
            if track is not None:
                track.held = held
                track.note_wait(waited_s)

    def end(self, tag: object) -> None:
        """No more audio for `tag`: its tail is padded to a whole frame and played out."""
        with self._lock:
            track = self._find(tag)
            if track is not None:
                track.ended = True

    def drop(self, tag: object) -> int:
        """Forget `tag`'s queued audio (skip); returns the bytes dropped. The next read is already past it."""
        with self._lock:
            self._dropped.append(tag)
            dropped = sum(len(t.data) for t in self._tracks if t.tag == tag)
            self._tracks = collections.deque(t for t in self._tracks if t.tag != tag)
            return dropped

    def drop_all(self) -> int:
        with self._lock:
            dropped = sum(len(t.data) for t in self._tracks)
            self._dropped.extend(t.tag for t in self._tracks)
            self._tracks.clear()
            return dropped

    def close(self) -> None:
        """End the stream: the player's next read gets b'' and stops."""
        with self._lock:
            self._closed = True
            self._tracks.clear()

    @property
    def playing_tag(self) -> object | None:
        """The tag whose audio the listener hears now (or hears next), None when nothing is queued."""
        with self._lock:
            return self._tracks[0].tag if self._tracks else None

    def queued_bytes(self, tag: object | None = None) -> int:
        with self._lock:
            return sum(len(t.data) for t in self._tracks if tag is None or t.tag == tag)

    def queued_seconds(self, tag: object | None = None) -> float:
        return self.queued_bytes(tag) / BYTES_PER_SECOND

    def unheard_tags(self) -> list[object]:
        """The tags with audio still queued (what a listener would miss if the stream stopped now)."""
        with self._lock:
            return [t.tag for t in self._tracks if t.data]

    def has_audio(self, tag: object) -> bool:
        with self._lock:
            return any(t.tag == tag for t in self._tracks)

    @property
    def idle(self) -> bool:
        """Nothing queued and no render's track open (a track that ended and played out is gone)."""
        with self._lock:
            return not any(not t.finished for t in self._tracks)

    # -- consumer side (player thread) -----------------------------------------------------------------------------

    def read(self) -> bytes:
        if self._player_thread != threading.get_ident():
            self._player_thread = threading.get_ident()
            _prioritise_this_thread()
        if self._pace_reads:
            self._pace()
        with self._lock:
            if self._closed:
                return b""
            self.frames_read += 1
            frame = self._next_frame(self._clock())
            went_idle = self._count_idle()
        if went_idle and self.on_idle is not None:
            self.on_idle()
        if frame is None:
            return SILENCE
        self.audio_frames_read += 1
        return frame

    def _pace(self) -> None:
        """Refuse to be read in a burst. discord.py's player keeps a schedule anchored at its start, so after its
        thread was starved (GIL, CPU) it asks for the missed frames back-to-back. We keep our own schedule: a late
        player catches up with it at one read per CATCH_UP_GAP_S (a late packet, then a brisk catch-up: never a
        burst, and never a stream that stays late, which would empty any jitter buffer stall by stall); past
        MAX_CATCH_UP_S late the debt is forgiven; reads ahead of our schedule wait for it."""
        now = self._perf_counter()
        if self._due is None or now - self._due > MAX_CATCH_UP_S:
            self._due = now  # first read, or too late to catch up: go on from here
        target = self._due if self._last_read is None else max(self._due, self._last_read + CATCH_UP_GAP_S)
        if now < target:
            self._sleep(target - now)
            now = self._perf_counter()
        self._last_read = now
        self._due += FRAME_S

    def is_opus(self) -> bool:
        return False

    def cleanup(self) -> None:
        # The player calls this when it stops (disconnect, stop()); the guild's stream object itself stays reusable
        # only through a new PCMStreamSource, so there is nothing to release here. Idempotent by design.
        log.debug("voice source cleaned up after %d frames (%d with audio)", self.frames_read, self.audio_frames_read)

    # -- internals (lock held) -------------------------------------------------------------------------------------

    def _find(self, tag: object) -> Track | None:
        for track in self._tracks:
            if track.tag == tag:
                return track
        return None

    def _track(self, tag: object) -> Track:
        track = self._find(tag)
        if track is None:
            track = Track(tag)
            self._tracks.append(track)
        return track

    def _count_idle(self) -> bool:
        """True on the one read at which the stream has been empty for IDLE_FRAMES reads in a row."""
        if self._tracks:
            self._empty_reads = 0
            return False
        self._empty_reads += 1
        return self._empty_reads == IDLE_FRAMES

    def _next_frame(self, now: float) -> bytes | None:
        while self._tracks and self._tracks[0].finished:
            self._tracks.popleft()
        if not self._tracks:
            return None
        track = self._tracks[0]
        if not track.open:
            if not track.ready(now, self._prebuffer):
                return None  # waiting for the segment's gapless start: silence before it, never inside it
            track.open = True
        boundary = track.bytes_to_boundary()
        straddles = boundary is not None and boundary < FRAME_BYTES and len(track.data) > boundary
        # When the next segment starts inside this frame, run on into it only if it may start now.
        if straddles and not track.ready(now, self._prebuffer, track.played + boundary):
            track.open = False
            return _padded(track.take(boundary))
        if len(track.data) >= FRAME_BYTES:
            return track.take(FRAME_BYTES)
        if track.ended or (boundary is not None and len(track.data) == boundary):
            frame = _padded(track.take(len(track.data)))  # the tail of the track, or of a segment
            track.open = False
            return frame
        track.open = False  # ran dry inside a segment: production fell behind its own measured speed
        self.underruns += 1
        log.info("voice track %s ran dry inside a segment at %.2f s (production slower than it measured)", track.tag,
                 track.played / BYTES_PER_SECOND)  # fmt: skip
        return None


def _prioritise_this_thread() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), PLAYER_NICE)
    except (AttributeError, OSError) as exc:  # not Linux, or not allowed: the default priority must do
        log.debug("voice player thread keeps its priority: %s", exc)


def _padded(pcm: bytes) -> bytes:
    return pcm + bytes(FRAME_BYTES - len(pcm))
