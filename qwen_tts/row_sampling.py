"""Sampling for a batch whose rows each carry their own settings (``qwen_tts.sampling`` rules, row by row).

The rules and their order are those of ``qwen_tts.sampling`` (the reference): repetition penalty -> control-id
suppression -> EOS ban for the first ``MIN_NEW_TOKENS`` frames -> temperature -> top-k -> top-p -> inverse-CDF draw
with one uniform per row. Here every setting is a (B,) tensor, so one call serves rows with different settings and a
row's result never depends on the other rows. No branch reads a tensor value, so the functions trace into one graph.

The repetition history is a fixed-size (B, vocab) "seen" mask: the official rule penalises each distinct id of the
history once (gather, then scatter), so the set of ids seen is all it needs.
``Plan`` says which stages any live row uses; the eager path skips the others, the compiled step runs them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from qwen_tts.sampling import MIN_NEW_TOKENS, NEG_INF, SamplingParams, sample_with_uniform


class Plan(NamedTuple):
    """Stages some row needs (static per step: a compiled step is built with all of them on)."""

    talker_sample: bool = True
    sub_sample: bool = True
    top_k: bool = True
    top_p: bool = True
    penalty: bool = True

    @classmethod
    def everything(cls) -> Plan:
        return cls()

    @classmethod
    def for_params(cls, params: list[SamplingParams]) -> Plan:
        vocab_cut = any(p.top_k > 0 for p in params if not p.talker_greedy) or any(
            p.subtalker_top_k > 0 for p in params if not p.subtalker_greedy
        )
        nucleus = any(p.top_p < 1 for p in params if not p.talker_greedy) or any(
            p.subtalker_top_p < 1 for p in params if not p.subtalker_greedy
        )
        return cls(
            talker_sample=any(not p.talker_greedy for p in params),
            sub_sample=any(not p.subtalker_greedy for p in params),
            top_k=vocab_cut,
            top_p=nucleus,
            penalty=any(p.repetition_penalty != 1.0 for p in params),
        )


@dataclass
class Warp:
    """Per-row warp settings of one sampler (talker or sub-talker): greedy (B,) bool, temperature, top_k, top_p."""

    greedy: torch.Tensor
    temperature: torch.Tensor
    top_k: torch.Tensor
    top_p: torch.Tensor


def row_values(p: SamplingParams, sub: bool) -> tuple[bool, float, int, float]:
    """(greedy, temperature, top_k, top_p) of one sampler; greedy rows get temperature 1 (never divided by 0)."""
    if sub:
        greedy, t, k, top_p = p.subtalker_greedy, p.subtalker_temperature, p.subtalker_top_k, p.subtalker_top_p
    else:
        greedy, t, k, top_p = p.talker_greedy, p.temperature, p.top_k, p.top_p
    return greedy, (1.0 if greedy else t), k, top_p


def warp_rows(scores: torch.Tensor, w: Warp, plan: Plan) -> torch.Tensor:
    """Temperature, top-k (ties with the k-th kept), top-p (keeps >= 1 token), per row. Returns a new tensor."""
    scores = scores / w.temperature[:, None]
    vocab = scores.shape[-1]
    if plan.top_k:
        ordered = torch.sort(scores, dim=-1, descending=True).values
        kth = ordered.gather(1, (w.top_k.clamp(min=1, max=vocab) - 1)[:, None])
        cut = ((w.top_k > 0) & (w.top_k < vocab))[:, None] & (scores < kth)
        scores = scores.masked_fill(cut, NEG_INF)
    if plan.top_p:
        sorted_scores, order = torch.sort(scores, descending=False, dim=-1)
        cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        remove_sorted = cumulative <= (1 - w.top_p)[:, None]
        remove_sorted[..., -1:] = False
        remove = remove_sorted.scatter(-1, order, remove_sorted)
        scores = scores.masked_fill(remove & (w.top_p < 1.0)[:, None], NEG_INF)
    return scores


def pick(scores: torch.Tensor, w: Warp, u: torch.Tensor, plan: Plan, sample: bool) -> torch.Tensor:
    """(B, V) processed scores -> (B,) ids: argmax for greedy rows, an inverse-CDF draw with ``u`` (B,) otherwise."""
    best = scores.argmax(dim=-1)
    if not sample:
        return best
    drawn = sample_with_uniform(warp_rows(scores, w, plan), u)
    return torch.where(w.greedy, best, drawn)


def talker_rows(
    logits: torch.Tensor,
    seen: torch.Tensor,
    penalty: torch.Tensor,
    frame: torch.Tensor,
    banned: torch.Tensor,
    eos_only: torch.Tensor,
    plan: Plan,
) -> torch.Tensor:
    """Codebook-0 scores before warping: penalty over ``seen`` (B, V), ``banned`` (V,) ids, EOS banned early."""
    scores = logits.float()
    if plan.penalty:
        hit = torch.where(scores < 0, scores * penalty[:, None], scores / penalty[:, None])
        scores = torch.where(seen, hit, scores)
    early = (frame < MIN_NEW_TOKENS)[:, None] & eos_only[None, :]
    return scores.masked_fill(banned[None, :] | early, NEG_INF)
