"""One render's audio inside a guild's stream: its bytes, its segment boundaries, how fast it is being produced, and
the gapless gate that decides when a segment may start playing.

A track is a tag's (a job id's) 48 kHz stereo s16le audio. The render marks where each segment of its script
starts (`begin_segment`) and how long that segment can run at most. The gate lets a segment start once

    buffered >= remaining x (1 - RATE_SAFETY x rate) + margin

where `remaining` is what is left of the segment at its bound, `rate` the measured production speed of this
segment (audio seconds produced per wall second since its production began) and `margin` twice the largest chunk
seen plus the source's prebuffer (audio arrives in whole chunks, not smoothly). With production keeping up (1.33x real
time and more) that is just the margin: the segment starts at once. Slower than real time, the segment starts later
but, once started, does not run dry before its end. A segment whose audio is all here (the next one has begun, or
the track ended) always plays, and so does one whose producer is held back by backpressure (the bound on queued
audio wins over the plan: waiting could bring nothing more). Silence is only inserted between segments, or when
production falls below 3/4 of its own measured speed (the gate then plans again from there).

Not thread-safe on its own: `PCMStreamSource` holds its lock around every call.
"""

from __future__ import annotations

from dataclasses import dataclass

BYTES_PER_SECOND = 48_000 * 2 * 2  # 48 kHz stereo int16
MIN_RATE_WINDOW_S = 0.05  # a rate measured over less than this is noise
SAME_CHUNK_S = 0.002  # pieces fed closer together than this are one chunk (the render cuts big chunks up)
PRIOR_DISCOUNT = 0.8  # a new segment's first guess of its speed: the previous segment's, a little slower
# The gate plans with this fraction of the measured speed: a device slows down once its audio plays (the encoder
# and the player share the machine) and with the load of other streams, and a plan that is too hopeful runs dry.
RATE_SAFETY = 0.75


@dataclass
class Segment:
    start: int  # byte offset of its first byte in the track
    bound: int  # bytes it can run to at most (0: unknown, the gate only prebuffers)
    begun_at: float | None = None  # when its production began (time.monotonic), else its first chunk's arrival
    fed: int = 0  # bytes of it produced so far
    last_at: float = 0.0  # when its latest chunk arrived
    largest: int = 0  # largest single chunk, bytes
    waited: float = 0.0  # seconds its producer spent held back by backpressure (not production time)
    chunk_start: int = 0  # `fed` when the latest chunk began

    def note(self, now: float, nbytes: int) -> None:
        if self.begun_at is None:
            self.begun_at = now
        if self.fed and now - self.last_at < SAME_CHUNK_S:  # one chunk fed in pieces
            self.largest = max(self.largest, nbytes + (self.fed - self.chunk_start))
        else:
            self.chunk_start = self.fed
            self.largest = max(self.largest, nbytes)
        self.fed += nbytes
        self.last_at = now

    def rate(self, now: float) -> float | None:
        """Audio seconds produced per wall second since the segment's production began: conservative (the time to
        its first chunk counts, and it falls while production stalls) and blind to how the chunks were delivered (an
        event loop that hands two chunks over at once does not make the device look fast). None before any audio."""
        if self.begun_at is None or not self.fed:
            return None
        elapsed = now - self.begun_at - self.waited
        if elapsed < MIN_RATE_WINDOW_S:
            return None
        return self.fed / BYTES_PER_SECOND / elapsed


class Track:
    def __init__(self, tag: object) -> None:
        self.tag = tag
        self.data = bytearray()  # not yet played
        self.ended = False
        self.fed = 0  # bytes ever fed
        self.played = 0  # bytes ever taken
        self.segments: list[Segment] = [Segment(0, 0)]
        self.open = False  # playing inside the current segment (its gate was passed)
        self.held = False  # its producer is held back by backpressure: waiting cannot bring more audio
        self.prior_rate: float | None = None  # the previous segment's speed, until this one has its own

    @property
    def finished(self) -> bool:
        return self.ended and not self.data

    def feed(self, now: float, pcm: bytes) -> None:
        self.data.extend(pcm)
        self.fed += len(pcm)
        self.segments[-1].note(now, len(pcm))

    def begin_segment(self, now: float, bound_bytes: int) -> None:
        """The audio fed from now on belongs to a new segment that runs `bound_bytes` at most (0: unknown), whose
        production begins `now`."""
        last = self.segments[-1]
        measured = last.rate(last.last_at) if last.fed else None
        if measured is not None:
            self.prior_rate = measured * PRIOR_DISCOUNT
        if last.fed == 0:  # nothing of the previous one arrived (or this is the first): it is this one
            last.bound, last.begun_at, last.waited = bound_bytes, now, 0.0
        else:
            self.segments.append(Segment(self.fed, bound_bytes, now))
        while len(self.segments) > 2 and self.segments[1].start <= self.played:
            self.segments.pop(0)  # keep only the segment being played and the ones after it

    def note_wait(self, seconds: float) -> None:
        self.segments[-1].waited += seconds

    def take(self, nbytes: int) -> bytes:
        out = bytes(self.data[:nbytes])
        del self.data[:nbytes]
        self.played += len(out)
        return out

    def bytes_to_boundary(self) -> int | None:
        """Bytes until the next segment starts (None when no later segment has begun)."""
        for segment in self.segments:
            if segment.start > self.played:
                return segment.start - self.played
        return None

    def ready(self, now: float, margin: int, position: int | None = None) -> bool:
        """May the segment at `position` (default: the play position) start, or go on, playing now?"""
        position = self.played if position is None else position
        index = max(i for i, s in enumerate(self.segments) if s.start <= position)
        segment = self.segments[index]
        end = self.segments[index + 1].start if index + 1 < len(self.segments) else None
        available = (end if end is not None else self.fed) - position
        if end is not None or self.ended:
            return True  # all of it is here
        if available <= 0:
            return False
        if self.held:
            return True  # all that may be queued is here
        if segment.bound <= 0:
            return available >= margin  # no plan for this segment: prebuffer only
        # Audio comes in whole chunks, and an engine grows them (doubling up to its chunk size): the next one may be
        # twice the largest so far and land just late.
        margin += 2 * segment.largest
        remaining = max(segment.bound - (position - segment.start), available)
        if available >= remaining:
            return True
        rate = segment.rate(now)
        if rate is None:
            rate = self.prior_rate if index == len(self.segments) - 1 else None
        if rate is None:
            return False
        need = remaining * max(0.0, 1.0 - rate * RATE_SAFETY) + margin
        return available >= min(need, remaining)
