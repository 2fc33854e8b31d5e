"""Causal convolution blocks of the codec decoder, each able to run on a whole sequence or chunk by chunk.

Every module takes ``state``: ``None`` for a one-shot pass over a whole sequence, or a ``StreamState`` dict that the
module reads and updates with the input history it needs for the next chunk. A fresh (empty) state equals the zero left
padding of the one-shot pass, so chunked output is the same computation as the whole one.
Attribute names equal the official ``decoder.*`` state-dict keys.
"""

from __future__ import annotations

import math

import torch
from torch import nn

# Per-stream carried tensors, keyed by the module that owns them.
StreamState = dict[nn.Module, object]


def with_history(owner: nn.Module, x: torch.Tensor, size: int, state: StreamState | None) -> torch.Tensor:
    """Prepend the last ``size`` time steps seen by ``owner`` (zeros at the start) to ``x`` (B, C, T).

    Returns (B, C, size + T). When ``state`` is given, the newest ``size`` steps are stored for the next call.
    """
    if size == 0:
        return x
    prev = state.get(owner) if state is not None else None
    if prev is None:
        prev = x.new_zeros(x.shape[0], x.shape[1], size)
    x = torch.cat([prev, x], dim=-1)
    if state is not None:
        state[owner] = x[..., x.shape[-1] - size :].clone()  # clone: a view would pin the whole chunk in memory
    return x


class CausalConv1d(nn.Module):
    """Conv1d (stride 1) with (k-1)*dilation zeros on the left: output t sees inputs <= t. (B, C, T) -> (B, C', T)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation, groups=groups)
        self.history = (kernel_size - 1) * dilation

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        return self.conv(with_history(self, x, self.history, state))


class CausalConvTranspose1d(nn.Module):
    """ConvTranspose1d (kernel k, stride s, s <= k <= 2s) trimmed by k-s on the right. (B, C, T) -> (B, C', T*s).

    The trim makes it causal: output block t depends on inputs t and (when k > s) t-1 only, so streaming carries
    ceil((k-s)/s) input frames and drops the output positions that belong to them.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int):
        super().__init__()
        if not stride <= kernel_size <= 2 * stride:
            raise ValueError(f"kernel_size={kernel_size} must be within [stride, 2*stride] for stride={stride}")
        self.conv = nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride=stride)
        self.stride = stride
        self.history = math.ceil((kernel_size - stride) / stride)

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        n = x.shape[-1]
        y = self.conv(with_history(self, x, self.history, state))
        start = self.history * self.stride
        return y[..., start : start + n * self.stride]


class SnakeBeta(nn.Module):
    """x + 1/(exp(beta) + 1e-9) * sin(exp(alpha) * x)^2, per channel; alpha and beta are stored as logs. (B, C, T)."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = torch.exp(self.alpha)[None, :, None]
        inv_beta = 1.0 / (torch.exp(self.beta)[None, :, None] + 1e-9)
        return x + inv_beta * torch.sin(x * alpha).pow(2)


class ConvNeXtBlock(nn.Module):
    """Causal depthwise conv k7 -> LayerNorm -> Linear(4x) -> GELU -> Linear -> gamma, plus residual. (B, C, T)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = CausalConv1d(dim, dim, kernel_size=7, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        h = self.dwconv(x, state).transpose(1, 2)  # (B, T, C)
        h = self.pwconv2(self.act(self.pwconv1(self.norm(h))))
        return x + (self.gamma * h).transpose(1, 2)


class ResidualUnit(nn.Module):
    """SnakeBeta -> causal conv k7 (dilated) -> SnakeBeta -> conv k1, plus residual. (B, C, T)."""

    def __init__(self, dim: int, dilation: int):
        super().__init__()
        self.act1 = SnakeBeta(dim)
        self.conv1 = CausalConv1d(dim, dim, kernel_size=7, dilation=dilation)
        self.act2 = SnakeBeta(dim)
        self.conv2 = CausalConv1d(dim, dim, kernel_size=1)

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        h = self.conv1(self.act1(x), state)
        return x + self.conv2(self.act2(h), state)


class DecoderBlock(nn.Module):
    """SnakeBeta -> causal transposed conv (x rate) -> residual units with dilation 1, 3, 9.

    (B, in_dim, T) -> (B, in_dim // 2, T * rate). ``block`` indices match the official keys ``block.{0..4}``.
    """

    def __init__(self, in_dim: int, out_dim: int, rate: int):
        super().__init__()
        units: list[nn.Module] = [SnakeBeta(in_dim), CausalConvTranspose1d(in_dim, out_dim, 2 * rate, rate)]
        units += [ResidualUnit(out_dim, d) for d in (1, 3, 9)]
        self.block = nn.ModuleList(units)

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        x = self.block[0](x)
        for unit in self.block[1:]:
            x = unit(x, state)
        return x
