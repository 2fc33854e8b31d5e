"""Seamless joins between separately generated pieces: a short crossfade between speech pieces, short fades into and
out of silence. Without them each piece starts and ends wherever the codec left it, which clicks.

The joiner holds back the last `fade` samples (10 ms by default) of the audio it has seen, because they may still
be mixed with the head of the next piece; everything it returns is final. Input and output: (n,) float32, 24 kHz.
"""

from __future__ import annotations

import numpy as np

EMPTY = np.zeros(0, dtype=np.float32)


def _ramp_in(n: int) -> np.ndarray:
    """sin^2 ramp from ~0 to ~1 over n samples; ramp_in + ramp_in[::-1] == 1 (constant-power-free, constant-sum)."""
    t = (np.arange(n, dtype=np.float64) + 0.5) / n
    return (np.sin(0.5 * np.pi * t) ** 2).astype(np.float32)


class Joiner:
    def __init__(self, fade_samples: int = 240) -> None:
        if fade_samples < 1:
            raise ValueError(f"fade_samples must be >= 1, got {fade_samples}")
        self.fade = fade_samples
        self._tail = EMPTY  # held back: end of the audio so far (<= fade samples)
        self._head: np.ndarray | None = None  # start of a new piece, collected until it can be crossfaded

    def begin_piece(self) -> None:
        """The next audio pushed starts a new speech piece (crossfaded with the held tail, or faded in)."""
        self._head = EMPTY

    def push(self, audio: np.ndarray) -> np.ndarray:
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if self._head is not None:
            self._head = np.concatenate([self._head, audio])
            if len(self._head) < self.fade:
                return EMPTY
            audio, self._head = self._join(self._head), None
        return self._hold(audio)

    def end_piece(self) -> np.ndarray:
        """A piece ended; if it was shorter than the fade, join what there is now."""
        if self._head is None:
            return EMPTY
        head, self._head = self._head, None
        return self._hold(self._join(head)) if len(head) else EMPTY

    def pause(self, samples: int) -> np.ndarray:
        """Fade the held tail out, then `samples` of silence."""
        return np.concatenate([self._fade_out_tail(), np.zeros(max(0, samples), dtype=np.float32)])

    def finish(self) -> np.ndarray:
        """The rest of the audio, faded out."""
        out = self.end_piece()
        return np.concatenate([out, self._fade_out_tail()])

    def _join(self, head: np.ndarray) -> np.ndarray:
        n = min(len(self._tail), len(head), self.fade)
        if n == 0:  # start of the track or after silence: fade in
            m = min(self.fade, len(head))
            head = head.copy()
            head[:m] *= _ramp_in(self.fade)[:m]
            return head
        ramp = _ramp_in(n)
        mixed = self._tail[-n:] * ramp[::-1] + head[:n] * ramp
        out = np.concatenate([self._tail[:-n], mixed, head[n:]])
        self._tail = EMPTY
        return out

    def _hold(self, audio: np.ndarray) -> np.ndarray:
        joined = np.concatenate([self._tail, audio])
        keep = min(self.fade, len(joined))
        self._tail = joined[len(joined) - keep :]
        return joined[: len(joined) - keep]

    def _fade_out_tail(self) -> np.ndarray:
        tail, self._tail = self._tail, EMPTY
        if not len(tail):
            return EMPTY
        return tail * _ramp_in(self.fade)[::-1][-len(tail) :]
