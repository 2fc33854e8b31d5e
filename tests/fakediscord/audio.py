"""Checks on audio received by the fake: joining packets, aligning with a reference, packet timing, and a listener's
receiver (`listen`: a fixed jitter buffer, the way a Discord client plays a stream).

Units: received PCM is 48 kHz stereo int16 (as Discord carries it); references are float32 mono at their own rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tests.fakediscord.voice import Packet

RATE = 48_000
MAX_OPUS_DELAY = 2_000  # samples at 48 kHz searched for the codec delay (Opus lookahead is ~312)


def mono_float(packets: Sequence[Packet]) -> np.ndarray:
    """Decoded packets in order, down-mixed to float32 mono in [-1, 1] (48 kHz), end-of-speech frames left out."""
    frames = [p.pcm for p in packets if not p.is_end_of_speech]
    if not frames:
        return np.zeros(0, dtype=np.float32)
    stereo = np.concatenate(frames).astype(np.float32) / 32768.0
    return stereo.mean(axis=1)


def to_48k(audio: np.ndarray, rate: int) -> np.ndarray:
    import soxr

    return audio.astype(np.float32) if rate == RATE else soxr.resample(audio.astype(np.float32), rate, RATE)


def trim_silence(audio: np.ndarray, threshold: float = 1e-3) -> np.ndarray:
    loud = np.flatnonzero(np.abs(audio) > threshold)
    return audio[loud[0] : loud[-1] + 1] if len(loud) else audio[:0]


@dataclass(frozen=True)
class Match:
    correlation: float  # Pearson correlation of the aligned, overlapping parts
    lag: int  # samples (48 kHz) by which the received audio trails the reference


def best_alignment(received: np.ndarray, reference: np.ndarray, max_lag: int) -> Match:
    """Slide `reference` over `received` (lags 0..max_lag, by FFT cross-correlation) and report the best overlap."""
    n = len(received) + len(reference)
    size = 1 << (n - 1).bit_length()
    cross = np.fft.irfft(np.fft.rfft(received, size) * np.conj(np.fft.rfft(reference, size)), size)[: max_lag + 1]
    lag = int(np.argmax(cross))
    overlap = min(len(received) - lag, len(reference))
    a, b = received[lag : lag + overlap], reference[:overlap]
    if overlap < 2 or a.std() == 0 or b.std() == 0:
        return Match(0.0, lag)
    return Match(float(np.corrcoef(a, b)[0, 1]), lag)


def match_reference(packets: Sequence[Packet], reference: np.ndarray, rate: int) -> Match:
    """Correlation of what arrived with the reference (e.g. the master, 24 kHz) after resampling to 48 kHz and
    aligning the Opus delay plus any leading silence before the first word."""
    received = mono_float(packets)
    wanted = trim_silence(to_48k(reference, rate))
    first = np.flatnonzero(np.abs(received) > 1e-3)
    start = max(int(first[0]) - MAX_OPUS_DELAY, 0) if len(first) else 0
    return best_alignment(received[start:], wanted, 2 * MAX_OPUS_DELAY + (first[0] - start if len(first) else 0))


@dataclass(frozen=True)
class Cadence:
    """Packet timing of one stream: gaps between consecutive arrivals (ms)."""

    gaps_ms: np.ndarray

    @property
    def p99(self) -> float:
        return float(np.percentile(self.gaps_ms, 99)) if len(self.gaps_ms) else 0.0

    @property
    def longest(self) -> float:
        return float(self.gaps_ms.max()) if len(self.gaps_ms) else 0.0

    def bursts(self, fast_ms: float = 5.0, run: int = 3) -> int:
        """Runs of >= `run` consecutive gaps under `fast_ms`: a player catching up after a stall."""
        count, streak = 0, 0
        for fast in self.gaps_ms < fast_ms:
            streak = streak + 1 if fast else 0
            count += streak == run
        return count


def cadence(packets: Sequence[Packet]) -> Cadence:
    """Gaps between the arrivals of consecutive audio packets (discord.py's 5 closing silence frames left out)."""
    times = np.array([p.at for p in packets if not p.is_end_of_speech])
    return Cadence(np.diff(times) * 1000.0)


def audible_span(packets: Sequence[Packet]) -> list[Packet]:
    """The packets from the first audible one to the last audible one (inclusive)."""
    loud = [i for i, p in enumerate(packets) if p.audible]
    return list(packets[loud[0] : loud[-1] + 1]) if loud else []


# -- what a listener's client makes of the packets ---------------------------------------------------------------------
JITTER_MS = 80.0  # a normal receive jitter buffer's first delay (Discord's clients, WebRTC's NetEQ: about 60-100 ms)
MAX_JITTER_MS = 400.0  # the most delay an adaptive buffer grows to (NetEQ grows further; a listener would notice lag)
CAPACITY_MS = 1000.0  # packets due further ahead than this overflow the buffer
FRAME_MS = 20.0
# What a listener notices as stutter: two dropouts close together, or one long one (a single dropout of a frame or
# two is concealed by the Opus decoder's packet-loss concealment and passes unnoticed in speech).
STUTTER_WINDOW_S = 10.0
LONGEST_UNNOTICED_DROPOUT_MS = 60.0


@dataclass(frozen=True)
class Hearing:
    """One stream as a receiver with an adaptive jitter buffer (as WebRTC's NetEQ, which Discord's clients use) plays
    it. Each talk spurt (the packets between discord.py's end-of-speech frames) is played from its first packet's
    arrival + the buffer's delay (starting at `jitter_ms`), one 20 ms frame after another; a packet that arrives after
    its turn means the buffer ran dry (a dropout, concealed while it lasts), after which the receiver buffers again
    with its delay grown to cover that lateness (at most MAX_JITTER_MS). Independent of the machine's load as long as
    the sender keeps time within the buffer."""

    dry: tuple[float, ...]  # arrival times of the packets that came after their turn
    late_ms: tuple[float, ...]  # by how much each of those was late (the dropout's length)
    overflows: int  # packets due more than `capacity_ms` ahead (a catch-up burst the buffer cannot hold)
    bursts: int  # runs of back-to-back packets (see `Cadence.bursts`)
    spurts: int
    packets: int

    @property
    def ran_dry(self) -> int:
        return len(self.dry)

    @property
    def stutters(self) -> bool:
        """Would a listener notice? Two dropouts within STUTTER_WINDOW_S, or one longer than
        LONGEST_UNNOTICED_DROPOUT_MS."""
        close = any(b - a < STUTTER_WINDOW_S for a, b in zip(self.dry, self.dry[1:], strict=False))
        return close or max(self.late_ms, default=0.0) > LONGEST_UNNOTICED_DROPOUT_MS

    def describe(self) -> str:
        worst = max(self.late_ms, default=0.0)
        return (f"{self.packets} packets in {self.spurts} spurt(s): ran dry {self.ran_dry}x (worst {worst:.0f} ms "
                f"late), {self.overflows} overflows, {self.bursts} bursts")  # fmt: skip


def listen(packets: Sequence[Packet], jitter_ms: float = JITTER_MS, capacity_ms: float = CAPACITY_MS,
           adaptive: bool = True) -> Hearing:  # fmt: skip
    dry: list[float] = []
    late: list[float] = []
    overflows = spurts = 0
    delay = jitter_ms  # the buffer's current delay; an adaptive buffer grows it to cover the lateness it has seen
    anchor: float | None = None  # when frame 0 of the current spurt plays (ms)
    index = 0
    for packet in packets:
        at = packet.at * 1000.0
        if packet.is_end_of_speech:
            anchor = None  # the spurt ended: the next packet starts a new one
            continue
        if anchor is None:
            anchor, index, spurts = at + delay, 0, spurts + 1
        due = anchor + index * FRAME_MS
        if at > due:
            dry.append(packet.at)
            late.append(at - due)
            if adaptive:
                delay = min(MAX_JITTER_MS, max(delay, at - due + jitter_ms))
            anchor = at + delay - index * FRAME_MS  # buffer again from here
        elif due - at > capacity_ms:
            overflows += 1
        index += 1
    timing = cadence(packets)
    count = sum(not p.is_end_of_speech for p in packets)
    return Hearing(tuple(dry), tuple(late), overflows, timing.bursts(), spurts, count)


def match_segments(
    packets: Sequence[Packet], reference: np.ndarray, rate: int, seconds: Sequence[float]
) -> list[Match]:
    """Heard vs master segment by segment (`seconds`: each segment's length in the master, from its sidecar), each
    found in order in what arrived: silence may come between segments, never inside one. Pauses and segments too
    short to judge (< 0.3 s) are skipped."""
    received = mono_float(packets)
    master = to_48k(reference, rate)
    matches, offset, cursor = [], 0, 0
    for length in seconds:
        n = int(round(length * RATE))
        piece = master[offset : offset + n]
        offset += n
        if n < int(0.3 * RATE) or piece.std() < 1e-4:
            continue
        window = received[cursor:]
        match = best_alignment(window, piece, max(len(window) - len(piece), 0))
        matches.append(Match(match.correlation, cursor + match.lag))
        cursor += match.lag + max(n - 2 * MAX_OPUS_DELAY, 0)
    return matches
