"""The eager reference decode calls for one left-padded batch: prefill, the code predictor, one talker position.

``Stepper`` is the numerical reference of every faster path: ``qwen_tts.fast.FastStepper`` (fused weights, same
math) and the batching engine's ``qwen_tts.step.decode_step``. The talker cache holds the left-padded prompt at slots
0..L-1 and step k at slot L+k; RoPE positions count real tokens only (cumsum of the mask - 1), so a padded row
behaves exactly as if it ran alone.
"""

from __future__ import annotations

import torch

from qwen_tts.model import Qwen3TTSModel
from qwen_tts.prompt import TalkerInputs
from qwen_tts.sampling import SamplingParams, choose, subtalker_scores


class Stepper:
    """The three model calls of the loop, eager PyTorch (the numerical reference)."""

    def __init__(self, model: Qwen3TTSModel, inputs: TalkerInputs, cache_len: int):
        self.model = model
        self.talker = model.talker
        batch, prompt_len = inputs.mask.shape
        if prompt_len >= cache_len:
            raise ValueError(
                f"the prompt has {prompt_len} positions but the cache holds {cache_len}; shorten the text "
                f"(or instruct / reference) or raise max_cache_len"
            )
        self.prompt_len, self.cache_len = prompt_len, cache_len
        self.cache = self.talker.model.new_cache(batch, cache_len)
        self.cp_cache = self.talker.code_predictor.new_cache(batch)
        self.padded = not bool(inputs.mask.all())
        self.valid = torch.ones(batch, cache_len, dtype=torch.bool, device=inputs.mask.device)
        self.valid[:, :prompt_len] = inputs.mask
        self.lengths = inputs.mask.sum(dim=1, keepdim=True)  # (B, 1) real prompt tokens per row
        self.inputs = inputs

    def close(self) -> None:
        """Called when generation ends (pooled steppers become free again)."""

    def prefill(self) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (logits (B, vocab), hidden (B, H)) at the last prompt position."""
        inputs = self.inputs
        if self.padded:
            positions = (inputs.mask.long().cumsum(dim=1) - 1).clamp(min=0)
            n = self.prompt_len
            causal = torch.ones(n, n, dtype=torch.bool, device=positions.device).tril()
            mask = (causal[None] & inputs.mask[:, None, :]) | torch.eye(n, dtype=torch.bool, device=positions.device)
            h = self.talker.model.run_layers(inputs.embeds, positions, mask[:, None], self.cache, 0)
        else:
            h = self.talker.model.run_layers(inputs.embeds, None, None, self.cache, 0)
        last = h[:, -1]
        return self.talker.codec_head(last), last

    def predict(
        self, past_hidden: torch.Tensor, c0: torch.Tensor, params: SamplingParams, gen: torch.Generator | None
    ) -> torch.Tensor:
        """past_hidden (B, H), c0 (B,) -> codes (B, 16); the predictor cache restarts at slot 0."""
        cp, greedy = self.talker.code_predictor, params.subtalker_greedy
        embeds = torch.stack((past_hidden, self.talker.codec_embed(c0)), dim=1)
        logits = cp.step(embeds, self.cp_cache, 0, 0)
        code = logits.argmax(dim=-1) if greedy else choose(subtalker_scores(logits, params), False, gen)
        codes = [c0, code]
        for j in range(1, cp.num_steps):
            logits = cp.step(cp.embed(j, code)[:, None], self.cp_cache, j + 1, j)
            code = logits.argmax(dim=-1) if greedy else choose(subtalker_scores(logits, params), False, gen)
            codes.append(code)
        return torch.stack(codes, dim=1)

    def talker_step(self, codes: torch.Tensor, text: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame ``step`` (0-based) codes (B, 16) + its text embedding (B, H) -> (logits (B, vocab), hidden (B, H))."""
        slot = self.prompt_len + step
        x = (self.talker.frame_embed(codes) + text)[:, None]
        if self.padded:
            positions = self.lengths + step
            mask = self.valid[:, None, None, : slot + 1]
            h = self.talker.model.run_layers(x, positions, mask, self.cache, slot)
        else:
            h = self.talker.model.run_layers(x, None, None, self.cache, slot)
        last = h[:, -1]
        return self.talker.codec_head(last), last
