"""One batched decode step over fixed-size row buffers: the unit the speed path compiles.

``decode_step(model, bufs, rows, text, u, plan)`` takes, for the first ``rows`` rows of the buffers, the talker's
last logits and hidden, samples codebook 0 (per-row settings, repetition history in a fixed (R, vocab) mask), runs
the 15 code-predictor steps (sampling each), then one talker position for the frame just made, and leaves the next
logits and hidden in the buffers. It returns the frame's codes (rows, 16) and the EOS flags (rows,).

Each row owns its own KV-cache row: its prompt sits at slots 0..L-1 and frame k at slot L+k, so its RoPE position
equals its slot and no row is padded; attention runs over every slot of the row under a ``slot <= position`` mask
(fixed shapes, tensor positions), which is what ``torch.compile`` and CUDA graphs need. Rows that are not in use
(``active`` False) are computed but never move. Everything is the eager modules' own math (``qwen_tts.layers``);
compiled or not, this function is the one decode path of the batching engine.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from qwen_tts.layers import KVCache
from qwen_tts.model import Qwen3TTSModel
from qwen_tts.row_sampling import Plan, Warp, pick, row_values, talker_rows
from qwen_tts.sampling import SamplingParams


class RowKV(KVCache):
    """A KVCache over given (layers, B, kv_heads, S, D) tensors (views of the shared buffers, written in place).

    ``update`` with a (B,) tensor ``start`` writes one new position per row at that row's own slot.
    """

    def __init__(self, k: torch.Tensor, v: torch.Tensor):
        self.k, self.v, self.max_len = k, v, k.shape[3]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor, start: int | torch.Tensor):
        if not isinstance(start, torch.Tensor):
            return super().update(layer, k, v, start)
        rows = torch.arange(k.shape[0], device=k.device)
        self.k[layer][rows, :, start] = k[:, :, 0]
        self.v[layer][rows, :, start] = v[:, :, 0]
        return self.k[layer], self.v[layer]


@dataclass
class StepBuffers:
    """Fixed-size per-row state of the batching engine (R rows, S cache slots each)."""

    k: torch.Tensor  # (layers, R, kv_heads, S, D) talker keys
    v: torch.Tensor
    logits: torch.Tensor  # (R, vocab) talker logits for the next codebook 0
    hidden: torch.Tensor  # (R, H) the talker hidden that produced them
    pos: torch.Tensor  # (R,) int64 slot of the next talker position
    frame: torch.Tensor  # (R,) int64 frames made so far
    active: torch.Tensor  # (R,) bool
    seen: torch.Tensor  # (R, vocab) bool codebook-0 ids generated so far (repetition history)
    penalty: torch.Tensor  # (R,) float32
    talker: Warp
    sub: Warp
    cos: torch.Tensor  # (S, D) talker RoPE for positions 0..S-1
    sin: torch.Tensor
    cp_cos: torch.Tensor  # (groups, D) code-predictor RoPE for its slots 0..15
    cp_sin: torch.Tensor
    banned: torch.Tensor  # (vocab,) bool control ids except EOS
    eos_only: torch.Tensor  # (vocab,) bool True at EOS
    slots: torch.Tensor  # (S,) int64 0..S-1

    @property
    def rows(self) -> int:
        return self.pos.shape[0]

    @property
    def cache_len(self) -> int:
        return self.k.shape[3]

    @classmethod
    def allocate(cls, model: Qwen3TTSModel, rows: int, cache_len: int) -> StepBuffers:
        talker = model.talker
        tc = model.config.talker_config
        weight = talker.codec_head.weight
        dev, dtype = weight.device, weight.dtype
        cache = talker.model.new_cache(rows, cache_len)
        cos, sin = talker.model.rotary.table(cache_len, dev, dtype)
        cp = talker.code_predictor
        cp_cos, cp_sin = cp.model.rotary.table(cp.config.num_code_groups, dev, dtype)
        banned = torch.zeros(tc.vocab_size, dtype=torch.bool, device=dev)
        banned[tc.control_id_start :] = True
        banned[tc.codec_eos_token_id] = False
        eos_only = torch.zeros_like(banned)
        eos_only[tc.codec_eos_token_id] = True

        def warp() -> Warp:
            return Warp(
                greedy=torch.ones(rows, dtype=torch.bool, device=dev),
                temperature=torch.ones(rows, device=dev),
                top_k=torch.zeros(rows, dtype=torch.long, device=dev),
                top_p=torch.ones(rows, device=dev),
            )

        return cls(
            k=cache.k, v=cache.v,
            logits=torch.zeros(rows, tc.vocab_size, device=dev, dtype=dtype),
            hidden=torch.zeros(rows, tc.hidden_size, device=dev, dtype=dtype),
            pos=torch.zeros(rows, dtype=torch.long, device=dev),
            frame=torch.zeros(rows, dtype=torch.long, device=dev),
            active=torch.zeros(rows, dtype=torch.bool, device=dev),
            seen=torch.zeros(rows, tc.vocab_size, dtype=torch.bool, device=dev),
            penalty=torch.ones(rows, device=dev),
            talker=warp(), sub=warp(),
            cos=cos[:cache_len].contiguous(), sin=sin[:cache_len].contiguous(),
            cp_cos=cp_cos[: cp.config.num_code_groups].contiguous(),
            cp_sin=cp_sin[: cp.config.num_code_groups].contiguous(),
            banned=banned, eos_only=eos_only,
            slots=torch.arange(cache_len, device=dev),
        )  # fmt: skip

    def tensors(self) -> list[torch.Tensor]:
        """Every buffer (for ``torch._dynamo.mark_static_address``: CUDA graphs may then write them in place)."""
        out = [self.k, self.v, self.logits, self.hidden, self.pos, self.frame, self.active, self.seen, self.penalty]
        for w in (self.talker, self.sub):
            out += [w.greedy, w.temperature, w.top_k, w.top_p]
        return out

    def set_row(self, row: int, params: SamplingParams) -> None:
        """Per-row sampling settings (host side, between steps)."""
        self.penalty[row] = params.repetition_penalty
        for w, sub in ((self.talker, False), (self.sub, True)):
            greedy, temperature, top_k, top_p = row_values(params, sub)
            w.greedy[row], w.temperature[row], w.top_k[row], w.top_p[row] = greedy, temperature, top_k, top_p


def _slice_warp(w: Warp, n: int) -> Warp:
    return Warp(w.greedy[:n], w.temperature[:n], w.top_k[:n], w.top_p[:n])


def _run_stack(stack, h, rope, mask, cache, start):
    for layer in stack.layers:
        h = layer(h, rope, mask, cache, start)
    return stack.norm(h)


def predict_codes(model: Qwen3TTSModel, bufs: StepBuffers, rows: int, hidden, c0, u, plan: Plan) -> torch.Tensor:
    """The 15 code-predictor steps for ``rows`` rows: (rows, H), (rows,) -> codes (rows, 16); ``u`` (rows, 15)."""
    talker = model.talker
    cp = talker.code_predictor
    sub = _slice_warp(bufs.sub, rows)
    cache = cp.model.new_cache(rows, cp.config.num_code_groups)
    x = cp.small_to_mtp_projection(torch.stack((hidden, talker.codec_embed(c0)), dim=1))
    codes = [c0]
    start = 0
    for j in range(cp.num_steps):
        n = x.shape[1]
        rope = (bufs.cp_cos[start : start + n][None, None], bufs.cp_sin[start : start + n][None, None])
        h = _run_stack(cp.model, x, rope, None, cache, start)
        code = pick(cp.lm_head[j](h[:, -1]).float(), sub, u[:, j], plan, plan.sub_sample)
        codes.append(code)
        start += n
        if j + 1 < cp.num_steps:
            x = cp.small_to_mtp_projection(cp.embed(j + 1, code)[:, None])
    return torch.stack(codes, dim=1)


def talker_forward(model: Qwen3TTSModel, bufs: StepBuffers, rows: int, codes, text):
    """One talker position per row at its own slot: codes (rows, 16), text (rows, H) -> logits, hidden."""
    talker = model.talker
    pos = bufs.pos[:rows]
    x = (talker.frame_embed(codes) + text)[:, None]
    rope = (bufs.cos[pos][:, None, None], bufs.sin[pos][:, None, None])  # (rows, 1, 1, D)
    mask = (bufs.slots[None, :] <= pos[:, None])[:, None, None, :]
    cache = RowKV(bufs.k[:, :rows], bufs.v[:, :rows])
    h = _run_stack(talker.model, x, rope, mask, cache, pos)
    last = h[:, -1]
    return talker.codec_head(last), last


def decode_step(
    model: Qwen3TTSModel, bufs: StepBuffers, rows: int, text: torch.Tensor, u: torch.Tensor, plan: Plan
) -> tuple[torch.Tensor, torch.Tensor]:
    """One frame for the first ``rows`` rows: text (rows, H) to add at this frame, u (rows, 16) uniforms.

    -> codes (rows, 16) int64, eos (rows,) bool. Buffers move on for active rows only.
    """
    tc = model.config.talker_config
    active = bufs.active[:rows]
    scores = talker_rows(
        bufs.logits[:rows], bufs.seen[:rows], bufs.penalty[:rows], bufs.frame[:rows], bufs.banned, bufs.eos_only, plan
    )
    c0 = pick(scores, _slice_warp(bufs.talker, rows), u[:, 0], plan, plan.talker_sample)
    codes = predict_codes(model, bufs, rows, bufs.hidden[:rows], c0, u[:, 1:], plan)
    logits, hidden = talker_forward(model, bufs, rows, codes, text)
    keep = active[:, None]
    bufs.logits[:rows] = torch.where(keep, logits, bufs.logits[:rows])
    bufs.hidden[:rows] = torch.where(keep, hidden, bufs.hidden[:rows])
    bufs.seen[:rows] = bufs.seen[:rows] | (torch.nn.functional.one_hot(c0, tc.vocab_size).bool() & keep)
    bufs.pos[:rows] = bufs.pos[:rows] + active.long()
    bufs.frame[:rows] = bufs.frame[:rows] + active.long()
    return codes, c0 == tc.codec_eos_token_id
