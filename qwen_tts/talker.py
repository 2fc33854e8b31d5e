"""The talker: a Qwen3-style decoder over summed text + codec embeddings that predicts codebook 0 of each frame.

Attribute paths equal the official keys under ``talker.``: ``model.codec_embedding`` (vocab 3072, H),
``model.text_embedding`` (text vocab, text hidden), ``model.layers.N.*``, ``model.norm``, ``text_projection``
(``linear_fc1`` text->text with bias, SiLU, ``linear_fc2`` text->H with bias), ``codec_head`` (H -> 3072, not tied)
and ``code_predictor``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from qwen_tts.code_predictor import CodePredictor
from qwen_tts.config import TalkerConfig
from qwen_tts.layers import DecoderStack


class TalkerModel(DecoderStack):
    """``talker.model``."""

    def __init__(self, cfg: TalkerConfig):
        super().__init__(cfg)
        self.codec_embedding = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.text_embedding = nn.Embedding(cfg.text_vocab_size, cfg.text_hidden_size)


class TextProjection(nn.Module):
    """``talker.text_projection`` (ResizeMLP): text hidden -> text hidden -> talker hidden, SiLU between."""

    def __init__(self, text_hidden: int, hidden: int):
        super().__init__()
        self.linear_fc1 = nn.Linear(text_hidden, text_hidden, bias=True)
        self.linear_fc2 = nn.Linear(text_hidden, hidden, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_fc2(F.silu(self.linear_fc1(x)))


class Talker(nn.Module):
    """``talker``."""

    def __init__(self, cfg: TalkerConfig):
        super().__init__()
        self.config = cfg
        self.model = TalkerModel(cfg)
        self.text_projection = TextProjection(cfg.text_hidden_size, cfg.hidden_size)
        self.codec_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.code_predictor = CodePredictor(cfg.code_predictor_config, cfg)

    def text_embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Text ids (...,) -> projected text-track embeddings (..., H)."""
        return self.text_projection(self.model.text_embedding(ids))

    def codec_embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Codec ids (...,) (codebook 0 and specials) -> (..., H)."""
        return self.model.codec_embedding(ids)

    def frame_embed(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (..., 16) -> sum of the 16 codebook embeddings (..., H): the talker input for one frame."""
        parts = [self.codec_embed(codes[..., 0])]
        parts += [self.code_predictor.embed(g, codes[..., g]) for g in range(1, self.config.num_code_groups)]
        return torch.stack(parts, dim=-2).sum(dim=-2)  # one reduction, the same summation order as the official code
