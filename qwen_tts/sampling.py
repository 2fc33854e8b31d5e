"""Sampling in the official (Hugging Face ``generate``) order, with an explicit ``torch.Generator``.

Talker (codebook 0): repetition penalty over the codebook-0 history -> suppress ``[vocab-1024, vocab)`` except EOS
-> EOS banned for the first ``MIN_NEW_TOKENS`` steps -> (sampling only) temperature -> top-k -> top-p -> softmax ->
multinomial. Greedy (``do_sample=False`` or temperature 0) takes the argmax after the first three.
Sub-talker (codebooks 1..15): temperature -> top-k -> top-p only, with its own settings.

``talker_scores`` and ``subtalker_scores`` return the processed logits (the "processed distribution" is their
softmax), so parity tests can compare them with the official processors step by step.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch

from qwen_tts.config import control_id_start

MIN_NEW_TOKENS = 2  # the official generate passes min_new_tokens=2
NEG_INF = float("-inf")


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings; the defaults are the checkpoints' generation_config.json values."""

    do_sample: bool = True
    temperature: float = 0.9
    top_k: int = 50
    top_p: float = 1.0
    repetition_penalty: float = 1.05
    subtalker_do_sample: bool = True
    subtalker_temperature: float = 0.9
    subtalker_top_k: int = 50
    subtalker_top_p: float = 1.0

    def __post_init__(self) -> None:
        for name in ("temperature", "subtalker_temperature"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0 means greedy), got {getattr(self, name)}")
        for name in ("top_p", "subtalker_top_p"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        for name in ("top_k", "subtalker_top_k"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0 disables it), got {getattr(self, name)}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")

    @classmethod
    def greedy(cls, repetition_penalty: float = 1.0) -> SamplingParams:
        """Fully deterministic: argmax for the talker and the sub-talker."""
        return cls(do_sample=False, subtalker_do_sample=False, repetition_penalty=repetition_penalty)

    @classmethod
    def from_generation_config(cls, data: dict[str, Any], **overrides: Any) -> SamplingParams:
        """From generation_config.json keys (``subtalker_dosample`` is the official spelling)."""
        renamed = {("subtalker_do_sample" if k == "subtalker_dosample" else k): v for k, v in data.items()}
        names = {f.name for f in fields(cls)}
        return cls(**{**{k: v for k, v in renamed.items() if k in names}, **overrides})

    @property
    def talker_greedy(self) -> bool:
        return not self.do_sample or self.temperature == 0

    @property
    def subtalker_greedy(self) -> bool:
        return not self.subtalker_do_sample or self.subtalker_temperature == 0


def suppress_mask(vocab_size: int, eos_id: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(vocab,) bool, True for the suppressed control-id window (``config.control_id_start``) except EOS."""
    mask = torch.zeros(vocab_size, dtype=torch.bool, device=device)
    mask[control_id_start(vocab_size) :] = True
    mask[eos_id] = False
    return mask


def apply_repetition_penalty(scores: torch.Tensor, history: torch.Tensor | None, penalty: float) -> torch.Tensor:
    """HF rule on every token id in ``history`` (B, t): negative logits * penalty, positive / penalty. In place."""
    if history is None or history.shape[-1] == 0 or penalty == 1.0:
        return scores
    picked = scores.gather(1, history)
    picked = torch.where(picked < 0, picked * penalty, picked / penalty)
    return scores.scatter_(1, history, picked)


def warp(scores: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Temperature, then top-k (ties with the k-th value kept), then top-p (nucleus, keeps >= 1 token). In place."""
    if temperature != 1.0:
        scores = scores.div_(temperature)
    if 0 < top_k < scores.shape[-1]:
        kth = torch.topk(scores, top_k, dim=-1).values[..., -1:]
        scores = scores.masked_fill_(scores < kth, NEG_INF)
    if top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=False, dim=-1)
        cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        remove_sorted = cumulative <= (1 - top_p)
        remove_sorted[..., -1:] = False
        remove = remove_sorted.scatter(-1, order, remove_sorted)
        scores = scores.masked_fill_(remove, NEG_INF)
    return scores


def talker_scores(
    logits: torch.Tensor,
    history: torch.Tensor | None,
    step: int,
    params: SamplingParams,
    suppressed: torch.Tensor,
    eos_id: int,
) -> torch.Tensor:
    """Processed codebook-0 logits (B, vocab) for generation step ``step`` (0 = the token from the prefill).

    history (B, step) holds the codebook-0 tokens generated so far. Returns a new float32 tensor.
    """
    scores = logits.float().clone()
    scores = apply_repetition_penalty(scores, history, params.repetition_penalty)
    scores.masked_fill_(suppressed, NEG_INF)
    if step < MIN_NEW_TOKENS:
        scores[:, eos_id] = NEG_INF
    if params.talker_greedy:
        return scores
    return warp(scores, params.temperature, params.top_k, params.top_p)


def subtalker_scores(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Processed logits (B, 2048) for one of codebooks 1..15 (no penalty, no suppression)."""
    scores = logits.float().clone()
    if params.subtalker_greedy:
        return scores
    return warp(scores, params.subtalker_temperature, params.subtalker_top_k, params.subtalker_top_p)


def choose(scores: torch.Tensor, greedy: bool, generator: torch.Generator | None) -> torch.Tensor:
    """(B, V) processed scores -> (B,) token ids: argmax, or one draw from their softmax (``sample_with_uniform``)."""
    if greedy:
        return scores.argmax(dim=-1)
    device = generator.device if generator is not None else scores.device  # a CPU generator may drive a GPU model
    u = torch.rand(scores.shape[0], generator=generator, device=device, dtype=scores.dtype).to(scores.device)
    return sample_with_uniform(scores, u)


def sample_with_uniform(scores: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """scores (B, V), u (B,) in [0, 1) -> (B,) ids: the token whose softmax-CDF interval holds each ``u``.

    Inverting the CDF takes one uniform number per row (``torch.multinomial`` costs ~5x more on CPU for a single
    draw); zero-probability tokens are never picked because ``right=True`` skips empty intervals.
    """
    cdf = scores.softmax(dim=-1).cumsum_(dim=-1)
    return torch.searchsorted(cdf, u[:, None] * cdf[:, -1:], right=True).squeeze(-1).clamp_(max=cdf.shape[-1] - 1)
