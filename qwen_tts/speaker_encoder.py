"""ECAPA-TDNN speaker encoder of the Base checkpoints: 24 kHz audio -> x-vector (enc_dim,).

log-mel (B, T, 128) -> TDNN k5 -> 3 SE-Res2Net blocks -> multi-layer feature aggregation (concat of the 3 blocks)
-> attentive statistics pooling (weighted mean and std) -> 1x1 conv -> (B, enc_dim).
Every TDNN is a Conv1d with "same" **reflect** padding, bias, then ReLU. Attribute names equal the official
``speaker_encoder.*`` keys. The config is any object with the ``speaker_encoder_config`` fields (mel_dim, enc_dim,
enc_channels, enc_kernel_sizes, enc_dilations, enc_attention_channels, enc_res2net_scale, enc_se_channels).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from qwen_tts.mel import N_MELS, SAMPLE_RATE, log_mel_spectrogram

log = logging.getLogger(__name__)

STD_EPS = 1e-12


def _same_conv(in_ch: int, out_ch: int, kernel: int = 1, dilation: int = 1) -> nn.Conv1d:
    return nn.Conv1d(in_ch, out_ch, kernel, dilation=dilation, padding="same", padding_mode="reflect")


class TDNNBlock(nn.Module):
    """Conv1d ("same", reflect) -> ReLU. (B, C, T) -> (B, C', T)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, dilation: int):
        super().__init__()
        self.conv = _same_conv(in_ch, out_ch, kernel, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x))


class Res2NetBlock(nn.Module):
    """Split channels into ``scale`` groups; group i>0 = TDNN(group i + output of group i-1), group 0 passes through."""

    def __init__(self, channels: int, scale: int, kernel: int, dilation: int):
        super().__init__()
        if channels % scale:
            raise ValueError(f"channels={channels} must be divisible by res2net_scale={scale}")
        self.scale = scale
        width = channels // scale
        self.blocks = nn.ModuleList(TDNNBlock(width, width, kernel, dilation) for _ in range(scale - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = torch.chunk(x, self.scale, dim=1)
        outputs = [parts[0]]
        for i, block in enumerate(self.blocks, start=1):
            outputs.append(block(parts[i] if i == 1 else parts[i] + outputs[-1]))
        return torch.cat(outputs, dim=1)


class SEBlock(nn.Module):
    """Squeeze-excitation: channel gates from the time mean. (B, C, T) -> (B, C, T)."""

    def __init__(self, channels: int, se_channels: int):
        super().__init__()
        self.conv1 = _same_conv(channels, se_channels)
        self.conv2 = _same_conv(se_channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.conv2(F.relu(self.conv1(x.mean(dim=2, keepdim=True)))))
        return x * gate


class SERes2NetBlock(nn.Module):
    """TDNN k1 -> Res2Net -> TDNN k1 -> SE, plus residual. (B, C_in, T) -> (B, C, T); C_in must equal C."""

    def __init__(self, in_ch: int, out_ch: int, scale: int, se_channels: int, kernel: int, dilation: int):
        super().__init__()
        self.tdnn1 = TDNNBlock(in_ch, out_ch, 1, 1)
        self.res2net_block = Res2NetBlock(out_ch, scale, kernel, dilation)
        self.tdnn2 = TDNNBlock(out_ch, out_ch, 1, 1)
        self.se_block = SEBlock(out_ch, se_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.se_block(self.tdnn2(self.res2net_block(self.tdnn1(x))))


def _weighted_stats(x: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std over time of x (B, C, T) with weights (B, C|1, T) summing to 1 -> two (B, C)."""
    mean = (weights * x).sum(dim=2)
    var = (weights * (x - mean.unsqueeze(2)).pow(2)).sum(dim=2)
    return mean, torch.sqrt(var.clamp(min=STD_EPS))


class AttentiveStatisticsPooling(nn.Module):
    """Attention over time, conditioned on the global mean/std, -> weighted mean and std. (B, C, T) -> (B, 2C, 1)."""

    def __init__(self, channels: int, attention_channels: int):
        super().__init__()
        self.tdnn = TDNNBlock(channels * 3, attention_channels, 1, 1)
        self.conv = _same_conv(attention_channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[-1]
        uniform = torch.full((x.shape[0], 1, t), 1.0 / t, dtype=x.dtype, device=x.device)
        mean, std = _weighted_stats(x, uniform)
        context = torch.cat([x, mean.unsqueeze(2).expand(-1, -1, t), std.unsqueeze(2).expand(-1, -1, t)], dim=1)
        attention = torch.softmax(self.conv(torch.tanh(self.tdnn(context))), dim=2)
        mean, std = _weighted_stats(x, attention)
        return torch.cat([mean, std], dim=1).unsqueeze(2)


class SpeakerEncoder(nn.Module):
    """ECAPA-TDNN: log-mel (B, T, mel_dim) -> x-vector (B, enc_dim)."""

    def __init__(self, cfg: Any):
        super().__init__()
        channels, kernels, dilations = list(cfg.enc_channels), list(cfg.enc_kernel_sizes), list(cfg.enc_dilations)
        if not len(channels) == len(kernels) == len(dilations):
            raise ValueError("enc_channels, enc_kernel_sizes and enc_dilations must have the same length")
        if channels[-1] != sum(channels[1:-1]):
            raise ValueError(
                f"enc_channels[-1]={channels[-1]} must equal sum(enc_channels[1:-1])={sum(channels[1:-1])}"
            )
        if cfg.mel_dim != N_MELS:
            raise ValueError(f"mel_dim={cfg.mel_dim} is not supported: the mel front end has {N_MELS} bins")
        blocks: list[nn.Module] = [TDNNBlock(cfg.mel_dim, channels[0], kernels[0], dilations[0])]
        for i in range(1, len(channels) - 1):
            blocks.append(
                SERes2NetBlock(
                    channels[i - 1], channels[i], cfg.enc_res2net_scale, cfg.enc_se_channels, kernels[i], dilations[i]
                )
            )
        self.blocks = nn.ModuleList(blocks)
        self.mfa = TDNNBlock(channels[-1], channels[-1], kernels[-1], dilations[-1])
        self.asp = AttentiveStatisticsPooling(channels[-1], cfg.enc_attention_channels)
        self.fc = _same_conv(channels[-1] * 2, cfg.enc_dim)
        # Reflect padding needs more frames than the widest one-sided pad.
        self.min_frames = max(math.ceil((k - 1) * d / 2) for k, d in zip(kernels, dilations, strict=True)) + 1

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        """mels (B, T, mel_dim) -> (B, enc_dim)."""
        if mels.shape[1] < self.min_frames:
            raise ValueError(f"reference audio too short: {mels.shape[1]} mel frames, need >= {self.min_frames}")
        h = mels.transpose(1, 2)
        outputs = []
        for block in self.blocks:
            h = block(h)
            outputs.append(h)
        h = self.mfa(torch.cat(outputs[1:], dim=1))
        return self.fc(self.asp(h)).squeeze(-1)


@torch.inference_mode()
def speaker_embedding(encoder: SpeakerEncoder, audio: np.ndarray | torch.Tensor, sr: int) -> torch.Tensor:
    """x-vector (enc_dim,) float32 of mono audio (N,) (or (N, channels), mixed down); resampled to 24 kHz if needed."""
    from qwen_tts.audio import model_input

    wave = model_input(audio, sr, SAMPLE_RATE)
    param = next(encoder.parameters())
    mels = log_mel_spectrogram(torch.from_numpy(wave).unsqueeze(0))
    return encoder(mels.to(device=param.device, dtype=param.dtype))[0].float()
