"""Continuous batching: every running request is a row of one batched decode step.

    engine = BatchEngine(tts, max_rows=8)          # starts its scheduler (and codec) thread
    engine.warm_up()                               # compiles the step per batch bucket when the speed path is on
    stream = engine.submit(SynthesisRequest(...), seed=7)            # from any thread; bad input raises ValueError
    for chunk in stream: ...                       # float32 audio at tts.sample_rate: 2 frames, 4, 8, then 16
    stream.cancel()                                # the row leaves at the next frame boundary
    engine.close()

Split as in nano-vllm: ``sequence`` (one request: ``Stream`` for the caller, ``Sequence`` for the scheduler),
this module (the scheduler: admission, per-frame bookkeeping, leaving), ``runner`` (row buffers, prefill, the
compiled step), ``step`` (the step function) and ``codec_worker`` (audio for many streams, batched).

Scheduling: waiting requests are admitted first come, first served whenever a row is free; those admitted at one
boundary (and those arriving during that prefill) are prefilled together (one right-padded pass, each into its own
row) between two steps, so they join at the next frame boundary; a row leaves the moment it ends (EOS, frame cap,
cancel). A request's codes never depend on the others: its KV-cache row, positions, sampling settings and
random generator are its own, and the batch only changes which other rows share the matrix products.

Threading: ``submit``, ``Stream`` iteration and ``cancel`` are safe from any number of threads; the model is only
touched by the scheduler thread. ``close`` ends every open stream (reason "closed").
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

import torch

from qwen_tts.codec.multistream import MultiStreamDecoder
from qwen_tts.codec_worker import AudioJob, CodecWorker
from qwen_tts.row_sampling import Plan
from qwen_tts.runner import StepRunner, buckets, prefill_groups
from qwen_tts.sequence import END, Sequence, Stream

log = logging.getLogger(__name__)

DEFAULT_CACHE_LEN = 2048  # slots per row: prompt + frames (2048 - a 100-token prompt = 155 s of audio)
FIRST_CHUNK_FRAMES = 2
MAX_CHUNK_FRAMES = 16


def rows_for_memory(tts, cache_len: int, budget_bytes: int, most: int = 32) -> int:
    """Rows whose KV caches fit ``budget_bytes`` (the rule for a default max_rows), between 1 and ``most``."""
    tc = tts.config.talker_config
    elem = torch.finfo(tts.model.talker.codec_head.weight.dtype).bits // 8
    per_row = 2 * tc.num_hidden_layers * tc.num_key_value_heads * tc.attn_head_dim * cache_len * elem
    return max(1, min(most, budget_bytes // per_row))


class BatchEngine:
    """Serves many ``SynthesisRequest`` streams from one ``QwenTTS`` as rows of one batched decode step."""

    def __init__(
        self,
        tts,
        max_rows: int = 8,
        cache_len: int | None = None,
        first_chunk_frames: int = FIRST_CHUNK_FRAMES,
        max_chunk_frames: int = MAX_CHUNK_FRAMES,
        options=None,
        compile_backend: str = "inductor",
    ):
        if first_chunk_frames < 1 or max_chunk_frames < first_chunk_frames:
            raise ValueError("chunk sizes must satisfy 1 <= first_chunk_frames <= max_chunk_frames")
        self.tts = tts
        self.options = options or tts.options
        size = min(cache_len or DEFAULT_CACHE_LEN, tts.config.talker_config.max_position_embeddings)
        self.runner = StepRunner(tts.model, max_rows, size, self.options, compile_backend)
        self.first_chunk, self.max_chunk = first_chunk_frames, max_chunk_frames
        self.groups = tts.config.talker_config.num_code_groups
        self._cond = threading.Condition()
        self._waiting: deque[Sequence] = deque()
        self._running: dict[int, Sequence] = {}
        self._closed = False
        self._failure: BaseException | None = None
        self.steps = 0
        self.last_step_s = 0.0  # wall time of the latest decode step: how long a cancel may wait for its boundary
        self._codec = CodecWorker(MultiStreamDecoder(tts.codec.decoder))
        self._thread = threading.Thread(target=self._loop, name="qwen-tts-batch", daemon=True)
        self._thread.start()

    # -- public ----------------------------------------------------------------------------------------------------
    @property
    def max_rows(self) -> int:
        return self.runner.rows

    @property
    def cache_len(self) -> int:
        return self.runner.cache_len

    @property
    def compiled(self) -> bool:
        return self.runner.compiled

    def load(self) -> tuple[int, int]:
        """(rows running, requests waiting) right now: what an ETA needs to know about the current load."""
        with self._cond:
            return len(self._running), len(self._waiting)

    def warm_up(self) -> float:
        """Run (and with the speed path, compile) the step at every batch bucket; -> seconds. Call before serving."""
        with self._cond:
            if self._running or self._waiting:
                raise RuntimeError("warm_up must run before the first request")
            return self.runner.warm_up()

    def submit(
        self,
        req,
        seed: int | None = None,
        audio: bool = True,
        first_chunk_frames: int | None = None,
        max_chunk_frames: int | None = None,
        stop=None,
    ) -> Stream:
        """Queue ``req``; -> its ``Stream``. Raises ValueError for a bad request (nothing is queued then).

        ``seed`` seeds the request's own generator (None: a fresh random one); ``audio=False`` yields (16,) code
        frames instead of audio; chunk sizes default to the engine's; ``stop`` (a callable) cancels when True.
        """
        if req.max_frames is not None and req.max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {req.max_frames}")
        first = first_chunk_frames or self.first_chunk
        most = max(first, max_chunk_frames or self.max_chunk)
        inputs = self.tts.talker_inputs([req])  # validates and embeds (cheap next to a decode step)
        cap = self._frame_cap(req, inputs.mask.shape[1])
        generator = torch.Generator()
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(int(seed))
        stream = Stream(audio, self._wake, stop)
        seq = Sequence(stream, inputs, req.sampling, generator, cap, first, most, req.ref_codes)
        with self._cond:
            if self._closed or self._failure is not None:
                raise RuntimeError("this BatchEngine is closed" if self._closed else f"engine failed: {self._failure}")
            self._waiting.append(seq)
            self._cond.notify_all()
        return stream

    def close(self) -> None:
        """Stop serving; every open stream ends (reason "closed"). Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=30)
        self._codec.close()

    def __enter__(self) -> BatchEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- scheduler thread ------------------------------------------------------------------------------------------
    def _frame_cap(self, req, prompt_len: int) -> int:
        room = self.cache_len - prompt_len - 1
        if room < 1:
            raise ValueError(
                f"the prompt has {prompt_len} positions and does not fit a row of {self.cache_len} slots; "
                f"shorten the text, instruct or reference"
            )
        default = int(self.tts.generation_defaults.get("max_new_tokens", 8192)) - 1
        return max(1, min(req.max_frames or default, room))

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _loop(self) -> None:
        try:
            while self._admit():
                self._drop_cancelled()
                if self._running:
                    self._step()
        except BaseException as exc:  # the model failed: every stream gets the error, no new request is taken
            log.exception("batch engine failed")
            with self._cond:
                self._failure = exc
            self._end_all(RuntimeError(f"generation failed: {exc}"), "error")
            return
        self._end_all(None, "closed")

    def _admit(self) -> bool:
        """Wait for work, move waiting requests into free rows; False once closed."""
        with self._cond:
            while not self._closed and not self._waiting and not self._running:
                self._cond.wait()
            if self._closed:
                return False
        # Requests that arrive while a prefill runs join at the same boundary instead of waiting a whole decode
        # step; every pass fills at least one free row, so this ends within max_rows passes.
        while joining := self._take_waiting():
            self._prefill(joining)
        return True

    def _take_waiting(self) -> list[Sequence]:
        """Waiting requests moved into free rows (first come, first served); cancelled ones end here."""
        with self._cond:
            free = [r for r in range(self.max_rows) if r not in self._running]
            joining = []
            while self._waiting and free and not self._closed:
                seq = self._waiting.popleft()
                if seq.stream.cancelled:
                    seq.stream.finish("cancelled")
                    continue
                seq.row = free.pop(0)  # lowest free row first: the live rows stay packed at the front
                self._running[seq.row] = seq
                joining.append(seq)
        return joining

    def _prefill(self, joining: list[Sequence]) -> None:
        """Prompts that join at this boundary run together (one pass per group of similar lengths), so a request
        that arrived beside others does not wait for their prefills one after another before its first frame."""
        lengths = [seq.inputs.mask.shape[1] for seq in joining]
        started = time.perf_counter()
        for group in prefill_groups(lengths):
            self.runner.prefill_many([(joining[i].row, joining[i].inputs, joining[i].params) for i in group])
            for i in group:
                joining[i].stream.prefilled_with = len(group)
        log.debug("step %d: %d prompts prefilled in %.1f ms", self.steps, len(joining),
                  1e3 * (time.perf_counter() - started))  # fmt: skip
        for seq in joining:
            self._joined(seq)

    def _joined(self, seq: Sequence) -> None:
        seq.stream.joined_step = self.steps
        if seq.stream.audio:
            seq.audio_id = self._codec.open()
            if seq.ref_codes is not None:
                self._codec.submit(AudioJob(seq.stream, seq.audio_id, seq.ref_codes, discard=True))

    def _drop_cancelled(self) -> None:
        for seq in [s for s in self._running.values() if s.stream.cancelled]:
            self._leave(seq, "cancelled")

    def _step(self) -> None:
        rows = sorted(self._running)
        used = rows[-1] + 1
        bufs = self.runner.bufs
        text = torch.zeros(used, bufs.hidden.shape[1], dtype=bufs.hidden.dtype, device=bufs.hidden.device)
        u = torch.zeros(used, self.groups)
        for row in rows:
            seq = self._running[row]
            text[row] = seq.text_embed()
            u[row] = seq.uniforms(self.groups)
        plan = Plan.for_params([self._running[r].params for r in rows])
        threads = self.options.cpu_threads if not bufs.k.is_cuda else None
        before = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        started = time.perf_counter()
        try:
            codes, eos = self.runner.step(used, text, u.to(bufs.k.device), plan)
            codes, eos = codes.cpu(), eos.cpu()
        finally:
            if threads:
                torch.set_num_threads(before)
        self.steps += 1
        self.last_step_s = time.perf_counter() - started
        for row in rows:
            seq = self._running[row]
            if bool(eos[row]):
                self._leave(seq, "eos")
                continue
            seq.frames += 1
            seq.stream.frames = seq.frames
            self._emit(seq, codes[row])
            if seq.frames >= seq.cap:
                self._leave(seq, "cap")

    def _emit(self, seq: Sequence, frame: torch.Tensor) -> None:
        if not seq.stream.audio:
            seq.stream.put(frame)
            return
        seq.pending.append(frame)
        chunk = seq.take_chunk(final=False)
        if chunk is not None:
            self._codec.submit(AudioJob(seq.stream, seq.audio_id, chunk))

    def _leave(self, seq: Sequence, reason: str) -> None:
        """The row leaves now; its remaining frames are flushed (unless cancelled) and its stream ends."""
        with self._cond:
            self._running.pop(seq.row, None)
        self.runner.release(seq.row)
        seq.stream.left_step = self.steps
        if seq.stream.audio:
            chunk = None if reason == "cancelled" else seq.take_chunk(final=True)
            self._codec.submit(AudioJob(seq.stream, seq.audio_id, chunk, final=True))
        else:
            seq.stream.put(END)
        seq.stream.finish(reason)

    def _end_all(self, error: BaseException | None, reason: str) -> None:
        with self._cond:
            waiting, running = list(self._waiting), list(self._running.values())
            self._waiting.clear()
        for seq in running:
            if error is not None:
                seq.stream.put(error)
            self._leave(seq, reason)
        for seq in waiting:
            seq.stream.put(error if error is not None else END)
            seq.stream.finish(reason)


__all__ = ["BatchEngine", "Stream", "buckets", "rows_for_memory"]
