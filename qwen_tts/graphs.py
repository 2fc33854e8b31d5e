"""GPU speed path: one CUDA graph for a talker step and one for the whole 15-step code predictor.

``StaticStepper`` runs both calls with fixed shapes and tensor-valued positions (the KV write slot, RoPE positions
and the causal mask are all computed from tensors, attention runs over every cache slot under a mask), which is what
a CUDA graph needs; it runs on any device, so CPU tests check it against the eager reference. Sub-talker sampling
inside the graph inverts the CDF with uniforms drawn before the replay from the caller's generator.
``CudaGraphStepper`` captures the two calls once per (batch, cache size, sampling settings, dtype) and keeps them in a
small pool on the model, so later requests replay without capturing; the caches live with the pooled graphs.

Opt in with ``QwenTTS.from_pretrained(..., cuda_graphs=True)``; ``QWEN_TTS_NO_CUDA_GRAPH=1`` or
``NARRATOR_COMPILE=0`` turns it off everywhere. The eager path stays the reference.
"""

from __future__ import annotations

import logging
import os
import threading

import torch
import torch.nn.functional as F

from qwen_tts.fast import FastStepper, pack
from qwen_tts.sampling import SamplingParams, sample_with_uniform, subtalker_scores

log = logging.getLogger(__name__)

MIN_BUCKET = 256
POOL_PER_KEY = 4  # graphs kept per (batch, bucket, sampling, dtype); more concurrent requests use the fused path


def graphs_disabled() -> bool:
    """The kill switch: QWEN_TTS_NO_CUDA_GRAPH=1 or NARRATOR_COMPILE=0."""
    return os.environ.get("QWEN_TTS_NO_CUDA_GRAPH", "") not in ("", "0") or os.environ.get("NARRATOR_COMPILE") == "0"


def cache_bucket(needed: int, limit: int) -> int:
    """Cache slots rounded up to a power of two (>= MIN_BUCKET, <= limit), so graphs are reused across requests."""
    size = MIN_BUCKET
    while size < needed:
        size *= 2
    return min(size, limit)


class StaticStepper(FastStepper):
    """FastStepper whose decode calls have static shapes and no host-side values (CUDA-graph ready)."""

    def __init__(self, model, inputs, cache_len: int, params: SamplingParams):
        super().__init__(model, inputs, cache_len)
        self.params = params
        stack = self.packed.talker
        weight = self.packed.codec_table
        cos, sin = stack.rotary.table(cache_len, weight.device, weight.dtype)
        half = stack.half
        self.cos_table = cos[:cache_len]
        self.sin_table = torch.cat((-sin[:cache_len, :half], sin[:cache_len, half:]), dim=-1)
        self.slot_range = torch.arange(cache_len, device=weight.device)
        batch = inputs.mask.shape[0]
        self.u = torch.zeros(batch, len(self.packed.heads), device=weight.device, dtype=torch.float32)
        self.slot = torch.zeros(1, dtype=torch.long, device=weight.device)
        self.positions = torch.zeros(batch, 1, dtype=torch.long, device=weight.device)

    def draw_uniforms(self, gen: torch.Generator | None) -> None:
        if not self.params.subtalker_greedy:
            device = gen.device if gen is not None else self.u.device
            self.u.copy_(torch.rand(self.u.shape, generator=gen, device=device))

    def predict_static(self, past_hidden: torch.Tensor, c0: torch.Tensor) -> torch.Tensor:
        """(B, H), (B,) -> codes (B, 16); sub-talker draws use ``self.u``."""
        params = self.params
        if params.subtalker_greedy:
            return self.predict_codes(past_hidden, c0, lambda logits, j: logits.argmax(dim=-1))
        return self.predict_codes(
            past_hidden, c0, lambda logits, j: sample_with_uniform(subtalker_scores(logits, params), self.u[:, j])
        )

    def talker_static(self, codes: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """codes (B, 16), text (B, H) at ``self.slot`` / ``self.positions`` -> (logits (B, V), hidden (B, H))."""
        p = self.packed
        x = (p.frame_embed(codes) + text)[:, None]
        rope = (self.cos_table[self.positions][:, :, None], self.sin_table[self.positions][:, :, None])
        mask = (self.valid & (self.slot_range <= self.slot))[:, None, None, :]
        h = p.talker.forward(x, rope, mask, self.cache, self.slot)
        last = h[:, -1]
        return F.linear(last, p.codec_head), last

    def set_step(self, step: int) -> None:
        self.slot.fill_(self.prompt_len + step)
        torch.add(self.lengths, step, out=self.positions)

    def predict(self, past_hidden, c0, params, gen):
        self.draw_uniforms(gen)
        return self.predict_static(past_hidden, c0)

    def talker_step(self, codes, text, step):
        self.set_step(step)
        return self.talker_static(codes, text)


class CudaGraphStepper(StaticStepper):
    """StaticStepper whose two decode calls replay captured CUDA graphs (captured on first use, then pooled)."""

    def __init__(self, model, inputs, cache_len: int, params: SamplingParams):
        super().__init__(model, inputs, cache_len, params)
        batch, hidden = inputs.mask.shape[0], inputs.embeds.shape[-1]
        dev, dtype = inputs.embeds.device, inputs.embeds.dtype
        self.in_hidden = torch.zeros(batch, hidden, device=dev, dtype=dtype)
        self.in_c0 = torch.zeros(batch, dtype=torch.long, device=dev)
        self.in_codes = torch.zeros(batch, len(self.packed.heads) + 1, dtype=torch.long, device=dev)
        self.in_text = torch.zeros(batch, hidden, device=dev, dtype=dtype)
        self.set_step(0)
        self.pool = torch.cuda.graph_pool_handle()
        self.predict_graph, self.out_codes = self._capture(lambda: self.predict_static(self.in_hidden, self.in_c0))
        self.talker_graph, self.out_talker = self._capture(lambda: self.talker_static(self.in_codes, self.in_text))
        self.busy = False

    def _capture(self, fn):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):  # warm-up outside the graph (allocator, cuBLAS handles)
                fn()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            out = fn()
        return graph, out

    def reset(self, inputs) -> None:
        """Reuse for a new request with the same batch size and cache size: new prompt mask and lengths."""
        self.inputs = inputs
        self.prompt_len = inputs.mask.shape[1]
        self.padded = not bool(inputs.mask.all())
        self.valid.fill_(True)
        self.valid[:, : self.prompt_len] = inputs.mask
        self.lengths.copy_(inputs.mask.sum(dim=1, keepdim=True))

    def predict(self, past_hidden, c0, params, gen):
        self.in_hidden.copy_(past_hidden)
        self.in_c0.copy_(c0)
        self.draw_uniforms(gen)
        self.predict_graph.replay()
        return self.out_codes.clone()

    def talker_step(self, codes, text, step):
        self.in_codes.copy_(codes)
        self.in_text.copy_(text)
        self.set_step(step)
        self.talker_graph.replay()
        logits, hidden = self.out_talker
        return logits.clone(), hidden.clone()

    def close(self) -> None:
        self.busy = False


_POOL_LOCK = threading.Lock()


@torch.no_grad()
def graph_stepper(model, inputs, cache_len: int, params: SamplingParams):
    """A pooled CudaGraphStepper for this request (None when the pool for its key is exhausted)."""
    batch, prompt_len = inputs.mask.shape
    limit = model.config.talker_config.max_position_embeddings
    bucket = cache_bucket(cache_len, max(limit, cache_len))
    if prompt_len >= bucket:
        return None
    key = (batch, bucket, params, inputs.embeds.dtype, inputs.embeds.device)
    with _POOL_LOCK:
        pools = model.__dict__.setdefault("_graph_pool", {})
        if any(st.packed is not pack(model) for entries in pools.values() for st in entries):
            pools.clear()  # weights moved or were edited: the captured graphs read the old fused tensors
        pool = pools.setdefault(key, [])
        for stepper in pool:
            if not stepper.busy:
                stepper.busy = True
                break
        else:
            if len(pool) >= POOL_PER_KEY:
                return None
            log.info("capturing CUDA graphs for batch %d, %d cache slots", batch, bucket)
            stepper = CudaGraphStepper(model, inputs, bucket, params)
            stepper.busy = True
            pool.append(stepper)
    stepper.reset(inputs)
    return stepper
