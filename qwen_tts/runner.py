"""The model side of the batching engine: fixed row buffers, per-row prefill, and the (compiled) decode step.

``StepRunner(model, rows, cache_len, options)`` owns ``StepBuffers`` for ``rows`` rows. ``prefill_many(joins)``
runs the prompts of requests joining together through the eager modules in one right-padded forward pass, each into
its own KV-cache row (slots 0..L-1), and arms the rows (``prefill(row, inputs)``: one request);
``step(used, text, u, plan)`` runs ``qwen_tts.step.decode_step`` over the first ``bucket(used)`` rows.

With ``options.wants_compiled_step`` the step is ``torch.compile(decode_step, fullgraph=True, dynamic=False)``
(``backend`` is inductor unless a test asks for a cheaper one that checks the same single graph)
(``mode="reduce-overhead"`` on CUDA: one CUDA graph per batch bucket 1, 2, 4, ... up to ``rows``), always with every
sampling stage on so one graph per bucket serves any settings. ``warm_up()`` compiles every bucket up front, with
inductor's cache in ``options.compile_cache_dir``; a step never compiles inside a user's request after that.
Not thread-safe: the engine's scheduler thread is its only caller.
"""

from __future__ import annotations

import logging
import os
import time

import torch

from qwen_tts.model import Qwen3TTSModel
from qwen_tts.options import RuntimeOptions
from qwen_tts.prompt import TalkerInputs
from qwen_tts.row_sampling import Plan
from qwen_tts.sampling import SamplingParams
from qwen_tts.step import StepBuffers, decode_step

log = logging.getLogger(__name__)

INDUCTOR_CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"


def buckets(max_rows: int) -> list[int]:
    """Batch sizes the step runs at: powers of two below ``max_rows``, then ``max_rows`` itself."""
    out, size = [], 1
    while size < max_rows:
        out.append(size)
        size *= 2
    return [*out, max_rows]


def bucket_for(used: int, max_rows: int) -> int:
    return next(b for b in buckets(max_rows) if b >= used)


def _right_padded(prompts: list[torch.Tensor]) -> torch.Tensor:
    """(L_i, H) prompts -> (B, max L, H), zeros after each one (a zero position stays finite through RMSNorm)."""
    if len(prompts) == 1:
        return prompts[0][None]
    out = prompts[0].new_zeros(len(prompts), max(p.shape[0] for p in prompts), prompts[0].shape[1])
    for i, p in enumerate(prompts):
        out[i, : p.shape[0]] = p
    return out


def prefill_groups(lengths: list[int], waste: float = 2.0) -> list[list[int]]:
    """Indices of prompts to prefill together: by length, a group's padded size at most ``waste`` x its real size.

    One long prompt would otherwise make every short one beside it pay its length.
    """
    groups: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        group = groups[-1] if groups else []
        grown = [*group, i]
        if group and len(grown) * lengths[i] <= waste * sum(lengths[j] for j in grown):
            group.append(i)
        else:
            groups.append([i])
    return groups


class StepRunner:
    def __init__(
        self, model: Qwen3TTSModel, rows: int, cache_len: int, options: RuntimeOptions, backend: str = "inductor"
    ):
        if rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {rows}")
        self.model = model
        self.options = options
        self.bufs = StepBuffers.allocate(model, rows, cache_len)
        self.compiled = options.wants_compiled_step
        self.backend = backend
        self.warmed = False
        self._fn = self._compile() if self.compiled else decode_step

    @property
    def rows(self) -> int:
        return self.bufs.rows

    @property
    def cache_len(self) -> int:
        return self.bufs.cache_len

    def _compile(self):
        if self.options.compile_cache_dir:
            os.makedirs(self.options.compile_cache_dir, exist_ok=True)
            os.environ[INDUCTOR_CACHE_ENV] = self.options.compile_cache_dir  # inductor reads it when it compiles
        if self.bufs.k.is_cuda:
            for t in self.bufs.tensors():
                torch._dynamo.mark_static_address(t)  # written in place by the step: lets CUDA graphs keep them
            mode = "reduce-overhead" if self.backend == "inductor" else None
            return torch.compile(decode_step, fullgraph=True, dynamic=False, backend=self.backend, mode=mode)
        return torch.compile(decode_step, fullgraph=True, dynamic=False, backend=self.backend)

    # -- rows ------------------------------------------------------------------------------------------------------
    def prefill(self, row: int, inputs: TalkerInputs, params: SamplingParams) -> None:
        """Run one unpadded prompt (batch 1) into row ``row`` and arm it (position L, frame 0, empty history)."""
        self.prefill_many([(row, inputs, params)])

    @torch.no_grad()
    def prefill_many(self, joins: list[tuple[int, TalkerInputs, SamplingParams]]) -> None:
        """Several unpadded prompts in one forward pass, each into its own row, armed as ``prefill`` arms one.

        The prompts are right-padded: every real position keeps the RoPE position and slot it has alone, and the
        causal attention never lets it see the padding that comes after it, so no mask is needed.
        """
        b = self.bufs
        lengths = [inputs.mask.shape[1] for _, inputs, _ in joins]
        if max(lengths) >= b.cache_len:
            raise ValueError(
                f"the prompt has {max(lengths)} positions and does not fit the cache of {b.cache_len} slots"
            )
        talker = self.model.talker
        embeds = _right_padded([inputs.embeds[0] for _, inputs, _ in joins])
        cache = talker.model.new_cache(len(joins), embeds.shape[1])
        h = talker.model.run_layers(embeds, None, None, cache, 0)
        last = h[torch.arange(len(joins), device=h.device), torch.tensor(lengths, device=h.device) - 1]
        logits = talker.codec_head(last)
        for i, (row, _, params) in enumerate(joins):
            b.k[:, row, :, : lengths[i]] = cache.k[:, i, :, : lengths[i]]
            b.v[:, row, :, : lengths[i]] = cache.v[:, i, :, : lengths[i]]
            b.logits[row], b.hidden[row] = logits[i], last[i]
            b.pos[row], b.frame[row] = lengths[i], 0
            b.seen[row] = False
            b.set_row(row, params)
            b.active[row] = True

    def release(self, row: int) -> None:
        """The row stops moving; its slots are overwritten by the next prefill."""
        self.bufs.active[row] = False
        self.bufs.pos[row] = 0

    # -- steps -----------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, used: int, text: torch.Tensor, u: torch.Tensor, plan: Plan) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows 0..used-1 (padded to a bucket): text (used, H), u (used, 16) -> codes (used, 16), eos (used,)."""
        size = bucket_for(used, self.rows)
        if size > used:
            text = torch.cat((text, text.new_zeros(size - used, text.shape[1])))
            u = torch.cat((u, u.new_zeros(size - used, u.shape[1])))
        if self.compiled:
            plan = Plan.everything()
        codes, eos = self._fn(self.model, self.bufs, size, text, u, plan)
        if self.compiled and self.bufs.k.is_cuda:
            codes, eos = codes.clone(), eos.clone()  # CUDA-graph outputs are overwritten by the next replay
        return codes[:used], eos[:used]

    @torch.no_grad()
    def warm_up(self) -> float:
        """Compile (or just run) the step at every bucket on idle rows; -> seconds spent. Leaves the rows idle."""
        start = time.perf_counter()
        b = self.bufs
        hidden = b.hidden.shape[1]
        for size in buckets(self.rows):
            text = torch.zeros(size, hidden, device=b.k.device, dtype=b.k.dtype)
            u = torch.full((size, self.model.config.talker_config.num_code_groups), 0.5, device=b.k.device)
            for _ in range(3 if self.compiled and b.k.is_cuda else 1):  # cudagraph trees record on a later call
                self.step(size, text, u, Plan.everything())
        b.seen.fill_(False)
        b.logits.zero_()
        b.hidden.zero_()
        self.warmed = True
        seconds = time.perf_counter() - start
        log.info("decode step %s for buckets %s in %.1f s", "compiled" if self.compiled else "warmed",
                 buckets(self.rows), seconds)  # fmt: skip
        return seconds
