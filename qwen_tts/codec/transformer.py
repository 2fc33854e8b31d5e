"""The codec decoder's pre-transformer: causal self-attention over a sliding window of frames, with LayerScale.

Input and output are (B, T, latent_dim) at 12.5 Hz. Attention at frame t sees frames t-window+1 .. t (72 by
default), with 1-D RoPE on absolute frame positions. Streaming carries the rotated keys and values of the last
window-1 frames per layer and the running frame position, so chunked output equals the one-shot pass.
Attribute names equal the official ``decoder.pre_transformer.*`` keys.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from qwen_tts.codec.config import CodecDecoderConfig
from qwen_tts.codec.convs import StreamState


class RMSNorm(nn.Module):
    """x * rsqrt(mean(x^2) + eps) * weight over the last dim, computed in fp32."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


class LayerScale(nn.Module):
    """Per-channel learnt scale on a residual branch."""

    def __init__(self, dim: int, init: float):
        super().__init__()
        self.scale = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class Attention(nn.Module):
    """Multi-head attention (no q/k norm) with RoPE and a boolean sliding-window mask."""

    def __init__(self, cfg: CodecDecoderConfig):
        super().__init__()
        self.num_heads = cfg.num_attention_heads
        self.num_kv_heads = cfg.num_key_value_heads
        self.head_dim = cfg.head_dim
        self.cache_frames = cfg.sliding_window - 1
        bias = cfg.attention_bias
        self.q_proj = nn.Linear(cfg.hidden_size, self.num_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(cfg.hidden_size, self.num_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(cfg.hidden_size, self.num_kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, cfg.hidden_size, bias=bias)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor,
        state: StreamState | None,
    ) -> torch.Tensor:
        """x: (B, T, hidden); rope cos/sin: (T, head_dim); mask: (T, cached + T) bool, True = attend."""
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hd)
        k = self.k_proj(x).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = rope
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if state is not None:
            cached = state.get(self)
            if cached is not None:
                k = torch.cat([cached[0], k], dim=2)
                v = torch.cat([cached[1], v], dim=2)
            keep = min(self.cache_frames, k.shape[2])
            state[self] = (k[:, :, k.shape[2] - keep :], v[:, :, v.shape[2] - keep :])
        if self.num_kv_heads != self.num_heads:
            rep = self.num_heads // self.num_kv_heads
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.head_dim**-0.5)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, -1))


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: CodecDecoderConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class TransformerLayer(nn.Module):
    def __init__(self, cfg: CodecDecoderConfig):
        super().__init__()
        self.self_attn = Attention(cfg)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn_layer_scale = LayerScale(cfg.hidden_size, cfg.layer_scale_initial_scale)
        self.mlp_layer_scale = LayerScale(cfg.hidden_size, cfg.layer_scale_initial_scale)

    def forward(self, x: torch.Tensor, rope, mask: torch.Tensor, state: StreamState | None) -> torch.Tensor:
        x = x + self.self_attn_layer_scale(self.self_attn(self.input_layernorm(x), rope, mask, state))
        return x + self.mlp_layer_scale(self.mlp(self.post_attention_layernorm(x)))


class PreTransformer(nn.Module):
    """Linear(latent->hidden) -> layers -> RMSNorm -> Linear(hidden->latent). (B, T, latent) -> (B, T, latent)."""

    def __init__(self, cfg: CodecDecoderConfig):
        super().__init__()
        self.window = cfg.sliding_window
        self.head_dim = cfg.head_dim
        self.rope_theta = cfg.rope_theta
        self.layers = nn.ModuleList(TransformerLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.input_proj = nn.Linear(cfg.latent_dim, cfg.hidden_size)
        self.output_proj = nn.Linear(cfg.hidden_size, cfg.latent_dim)

    def rope(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin of shape (T, head_dim) for integer frame positions (T,), computed in fp32."""
        exponent = torch.arange(0, self.head_dim, 2, dtype=torch.int64, device=positions.device).float() / self.head_dim
        inv_freq = 1.0 / (self.rope_theta**exponent)
        freqs = positions.float()[:, None] * inv_freq[None, :]
        emb = torch.cat([freqs, freqs], dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)

    def window_mask(self, start: int, length: int, cached: int, device: torch.device) -> torch.Tensor:
        """(length, cached + length) bool: query at start+i may see key positions in (start+i-window, start+i]."""
        q = torch.arange(start, start + length, device=device)[:, None]
        k = torch.arange(start - cached, start + length, device=device)[None, :]
        return (k <= q) & (k > q - self.window)

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        start = int(state.get(self, 0)) if state is not None else 0
        cached = min(start, self.window - 1)
        t = x.shape[1]
        positions = torch.arange(start, start + t, device=x.device)
        rope = self.rope(positions, x.dtype)
        mask = self.window_mask(start, t, cached, x.device)
        h = self.input_proj(x)
        for layer in self.layers:
            h = layer(h, rope, mask, state)
        if state is not None:
            state[self] = start + t
        return self.output_proj(self.norm(h))
