"""One request inside the batching engine: the caller's ``Stream`` and the scheduler's ``Sequence``.

``Stream`` is what ``BatchEngine.submit`` returns: a blocking iterator (code frames, or float32 audio chunks) that any
thread may consume, plus ``cancel()``. ``Sequence`` is the scheduler's record of the same request (its row, its
random stream, its trailing text, its frame cap and the frames not yet handed out); only the scheduler thread
touches it.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field

import torch

from qwen_tts.sampling import SamplingParams

END = object()  # queued after the last item of a stream
POLL_S = 0.05  # how often a blocked consumer re-checks for cancel


class Stream:
    """The output of one submitted request. Iterate it (blocking) from any one thread; cancel from any thread.

    Yields (16,) int64 CPU code frames (``audio=False``) or float32 numpy audio chunks at the codec rate. Iteration
    ends after the last frame (EOS or frame cap) or at once after ``cancel()``; an error inside the engine is raised
    from the iterator. ``reason`` says why it ended ("eos", "cap", "cancelled", "closed" or "error"), ``left`` is
    set when its row has left the batch, ``frames`` counts the frames generated. A ``stop`` callable given to
    ``submit`` is polled by the iterating thread (at least every ``POLL_S``); once it returns True the stream cancels. ``joined_step`` / ``left_step``
    are the engine's step counter when the row joined and left (what tests and load reports read); ``prefilled_with``
    is how many prompts its prefill pass ran (1: alone).
    """

    def __init__(self, audio: bool, on_cancel, stop=None):
        self.audio = audio
        self._stop = stop  # optional callable polled while iterating: True cancels the stream
        self.frames = 0
        self.joined_step: int | None = None
        self.left_step: int | None = None
        self.prefilled_with = 0
        self.reason: str | None = None
        self.left = threading.Event()
        self._items: queue.Queue = queue.Queue()
        self._cancelled = threading.Event()
        self._ended = False
        self._on_cancel = on_cancel

    def __iter__(self) -> Stream:
        return self

    def __next__(self):
        while not self._ended:
            if self._stop is not None and not self._cancelled.is_set() and self._stop():
                self.cancel()
            if self._cancelled.is_set():
                self._ended = True
                break
            try:
                item = self._items.get(timeout=POLL_S)
            except queue.Empty:
                continue
            if item is END:
                self._ended = True
                break
            if isinstance(item, BaseException):
                self._ended = True
                raise item
            return item
        raise StopIteration

    def cancel(self) -> None:
        """Stop this request: its row leaves the batch at the next frame boundary; iteration ends now."""
        if not self._cancelled.is_set():
            self._cancelled.set()
            self._on_cancel()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    # -- engine side -----------------------------------------------------------------------------------------------
    def put(self, item) -> None:
        self._items.put(item)

    def finish(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self.left.set()


@dataclass
class Sequence:
    """Scheduler-side state of one request."""

    stream: Stream
    inputs: object  # TalkerInputs of the request alone (batch 1, unpadded)
    params: SamplingParams
    generator: torch.Generator
    cap: int
    first_chunk: int
    max_chunk: int
    ref_codes: torch.Tensor | None = None
    row: int = -1
    frames: int = 0
    next_chunk: int = 0
    pending: list[torch.Tensor] = field(default_factory=list)
    audio_id: int | None = None

    def __post_init__(self) -> None:
        self.next_chunk = self.first_chunk

    def text_embed(self) -> torch.Tensor:
        """The text embedding added at the frame about to be made (trailing text, then the pad embedding)."""
        trailing = self.inputs.trailing[0]
        return trailing[self.frames] if self.frames < trailing.shape[0] else self.inputs.pad_embed

    def uniforms(self, groups: int) -> torch.Tensor:
        """(groups,) uniforms for this frame from the request's own generator: codebook 0 first, then 1..15.

        A greedy sampler draws nothing, as ``sampling.choose`` does, so the stream of numbers is the request's own.
        """
        u = torch.zeros(groups)
        talker = not self.params.talker_greedy
        sub = not self.params.subtalker_greedy
        count = int(talker) + (groups - 1) * int(sub)
        if count:
            draws = torch.rand(count, generator=self.generator)
            if talker:
                u[0] = draws[0]
            if sub:
                u[1:] = draws[int(talker) :]
        return u

    def take_chunk(self, final: bool) -> torch.Tensor | None:
        """The pending frames as (n, 16) once the chunk schedule (first, then doubling up to max) is met."""
        if not self.pending or (len(self.pending) < self.next_chunk and not final):
            return None
        chunk = torch.stack(self.pending)
        self.pending = []
        self.next_chunk = min(self.next_chunk * 2, self.max_chunk)
        return chunk
