"""The codec decoder: 16 codebooks at 12.5 Hz -> 24 kHz waveform, every operation causal.

codes (B, 16, T) -> RVQ dequantisation (B, codebook_dim, T) -> causal pre_conv k3 (B, latent, T) -> sliding-window
pre-transformer -> 2 x [causal transposed conv x2 -> ConvNeXt] (B, latent, 4T) -> causal conv k7 -> 4 SnakeBeta
decoder blocks (x8, x5, x4, x3) -> SnakeBeta -> causal conv k7 -> clamp [-1, 1]: (B, 1, T * 1920).
Attribute names equal the official ``decoder.*`` keys of ``speech_tokenizer/model.safetensors``.

``forward(codes, state)`` with ``state=None`` decodes a whole sequence; with a ``StreamState`` it decodes the next chunk
of frames and carries what the following chunk needs (see ``qwen_tts.codec.streaming``).
"""

from __future__ import annotations

import torch
from torch import nn

from qwen_tts.codec.config import CodecDecoderConfig
from qwen_tts.codec.convs import (
    CausalConv1d,
    CausalConvTranspose1d,
    ConvNeXtBlock,
    DecoderBlock,
    SnakeBeta,
    StreamState,
)
from qwen_tts.codec.quantizer import SplitResidualVectorQuantizer
from qwen_tts.codec.transformer import PreTransformer


class CodecDecoder(nn.Module):
    def __init__(self, cfg: CodecDecoderConfig):
        super().__init__()
        self.config = cfg
        self.total_upsample = cfg.total_upsample
        self.quantizer = SplitResidualVectorQuantizer(
            cfg.num_quantizers, cfg.num_semantic_quantizers, cfg.codebook_size, cfg.codebook_dim
        )
        self.pre_conv = CausalConv1d(cfg.codebook_dim, cfg.latent_dim, kernel_size=3)
        self.pre_transformer = PreTransformer(cfg)
        self.upsample = nn.ModuleList(
            nn.ModuleList([CausalConvTranspose1d(cfg.latent_dim, cfg.latent_dim, r, r), ConvNeXtBlock(cfg.latent_dim)])
            for r in cfg.upsampling_ratios
        )
        blocks: list[nn.Module] = [CausalConv1d(cfg.latent_dim, cfg.decoder_dim, kernel_size=7)]
        for i, rate in enumerate(cfg.upsample_rates):
            blocks.append(DecoderBlock(cfg.decoder_dim // 2**i, cfg.decoder_dim // 2 ** (i + 1), rate))
        out_dim = cfg.decoder_dim // 2 ** len(cfg.upsample_rates)
        blocks += [SnakeBeta(out_dim), CausalConv1d(out_dim, 1, kernel_size=7)]
        self.decoder = nn.ModuleList(blocks)

    def forward(self, codes: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        """codes (B, num_quantizers, T) int64 in [0, codebook_size) -> waveform (B, 1, T * total_upsample) in [-1, 1]."""
        hidden = self.pre_conv(self.quantizer.decode(codes), state)  # (B, latent, T)
        hidden = self.pre_transformer(hidden.transpose(1, 2), state).transpose(1, 2)
        for transpose_conv, convnext in self.upsample:
            hidden = convnext(transpose_conv(hidden, state), state)
        wav = self.decoder[0](hidden, state)
        for block in self.decoder[1:-2]:
            wav = block(wav, state)
        wav = self.decoder[-1](self.decoder[-2](wav), state)
        return wav.clamp(min=-1.0, max=1.0)

    def chunked_forward(self, codes: torch.Tensor, chunk_size: int = 300, left_context: int = 25) -> torch.Tensor:
        """The official approximate decode: independent chunks with ``left_context`` frames of re-decoded context.

        Kept only to compare against the official package (its ``chunked_decode``); ``forward`` is exact.
        codes (B, K, T) -> (B, 1, T * total_upsample).
        """
        pieces = []
        for start in range(0, codes.shape[-1], chunk_size):
            context = min(left_context, start)
            piece = self(codes[..., start - context : start + chunk_size])
            pieces.append(piece[..., context * self.total_upsample :])
        return torch.cat(pieces, dim=-1)
