"""Code predictor (sub-talker / MTP): given the talker hidden that produced codebook 0, predicts codebooks 1..15.

Module names equal the official keys under ``talker.code_predictor.``: ``model.codec_embedding.{0..14}`` (2048 rows,
talker-hidden wide), ``model.layers.N.*``, ``model.norm``, ``lm_head.{0..14}`` and ``small_to_mtp_projection`` (a
Linear with bias when the predictor is narrower than the talker, else Identity, with no weights).

Per frame it runs 16 positions at most: [talker hidden, E0(c0)] then E_j(c_j) for j = 1..14, each through
``small_to_mtp_projection``; position j (1..15) is read by ``lm_head[j-1]`` to give codebook j. Its KV cache starts
empty every frame.
"""

from __future__ import annotations

import torch
from torch import nn

from qwen_tts.config import CodePredictorConfig, TalkerConfig
from qwen_tts.layers import DecoderStack, KVCache


class CodePredictorModel(DecoderStack):
    """``talker.code_predictor.model``: embeddings for codebooks 1..15 plus the decoder stack."""

    def __init__(self, cfg: CodePredictorConfig, embedding_dim: int):
        super().__init__(cfg)
        self.codec_embedding = nn.ModuleList(
            nn.Embedding(cfg.vocab_size, embedding_dim) for _ in range(cfg.num_code_groups - 1)
        )


class CodePredictor(nn.Module):
    """``talker.code_predictor``."""

    def __init__(self, cfg: CodePredictorConfig, talker_cfg: TalkerConfig):
        super().__init__()
        self.config = cfg
        self.model = CodePredictorModel(cfg, talker_cfg.hidden_size)
        self.lm_head = nn.ModuleList(
            nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False) for _ in range(cfg.num_code_groups - 1)
        )
        if cfg.hidden_size != talker_cfg.hidden_size:
            self.small_to_mtp_projection: nn.Module = nn.Linear(talker_cfg.hidden_size, cfg.hidden_size, bias=True)
        else:
            self.small_to_mtp_projection = nn.Identity()

    @property
    def num_steps(self) -> int:
        """Codebooks predicted per frame (15)."""
        return self.config.num_code_groups - 1

    def new_cache(self, batch: int, device=None, dtype=None) -> KVCache:
        return self.model.new_cache(batch, self.config.num_code_groups, device, dtype)

    def step(self, embeds: torch.Tensor, cache: KVCache, start: int, head: int) -> torch.Tensor:
        """embeds (B, L, H_talker) at slots start.. -> logits (B, vocab) of ``lm_head[head]`` at the last position."""
        h = self.model.run_layers(self.small_to_mtp_projection(embeds), None, None, cache, start)
        return self.lm_head[head](h[:, -1])

    def embed(self, group: int, codes: torch.Tensor) -> torch.Tensor:
        """Codes of codebook ``group`` (1..15), any shape -> embeddings (..., H_talker)."""
        return self.model.codec_embedding[group - 1](codes)

    def full_logits(self, past_hidden: torch.Tensor, codes: torch.Tensor, c0_embed: torch.Tensor) -> torch.Tensor:
        """Teacher-forced reference without a cache: logits (B, 15, vocab) for codebooks 1..15.

        past_hidden (B, H) talker hidden, c0_embed (B, H) = talker codec_embedding(c0), codes (B, 16).
        """
        parts = [past_hidden[:, None], c0_embed[:, None]]
        parts += [self.embed(g, codes[:, g : g + 1]) for g in range(1, self.num_steps)]
        h = self.model.run_layers(self.small_to_mtp_projection(torch.cat(parts, dim=1)), None)
        return torch.stack([self.lm_head[j](h[:, j + 1]) for j in range(self.num_steps)], dim=1)
