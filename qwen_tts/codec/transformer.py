"""The codec decoder's pre-transformer: causal self-attention over a sliding window of frames, with LayerScale.

Input and output are (B, T, latent_dim) at 12.5 Hz. Attention at frame t sees frames t-window+1 .. t (72 by
default), with 1-D RoPE on absolute frame positions. Streaming carries the rotated keys and values of the last
window-1 frames per layer and the running frame position, so chunked output equals the one-shot pass.
Attribute names equal the official ``decoder.pre_transformer.*`` keys.
"""

from __future__ import annotations

import torch
from torch import nn

from qwen_tts.codec.config import CodecDecoderConfig
from qwen_tts.codec.convs import StreamState
from qwen_tts.layers import MLP, RMSNorm


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
    """Multi-head attention (no q/k norm) with RoPE over a sliding window of the last `sliding_window` frames."""

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
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], valid: torch.Tensor, state: StreamState | None
    ) -> torch.Tensor:
        """x (B, T, hidden); rope cos/sin (T, head_dim) or (B, 1, T, head_dim); valid (T, window) or
        (B, 1, T, window) bool key slots -> (B, T, hidden)."""
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hd)
        k = self.k_proj(x).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = rope
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        cached = state.get(self) if state is not None else None
        if cached is None:  # the frames before the first one are zeros that the mask hides
            cached = (k.new_zeros(b, self.num_kv_heads, self.cache_frames, self.head_dim),) * 2
        k = torch.cat([cached[0], k], dim=2)  # (B, nkv, window - 1 + T, hd)
        v = torch.cat([cached[1], v], dim=2)
        if state is not None:
            state[self] = (k[:, :, t:].clone(), v[:, :, t:].clone())
        if self.num_kv_heads != self.num_heads:
            rep = self.num_heads // self.num_kv_heads
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        return self.o_proj(self._windowed(q, k, v, valid).transpose(1, 2).reshape(b, t, -1))

    def _windowed(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Each query attends to exactly its own window of keys.

        q (B, nh, T, hd); k, v (B, nh, window - 1 + T, hd) -> (B, nh, T, hd). Computing every query against its
        own gathered window (rather than one masked T x T product) makes the arithmetic per frame identical however
        the frames are chunked, so streaming is bitwise equal to the one-shot pass.
        """
        window = self.cache_frames + 1
        k_win = k.unfold(2, window, 1)  # (B, nh, T, hd, window)
        v_win = v.unfold(2, window, 1)
        scores = (q.unsqueeze(-2) @ k_win).squeeze(-2) * self.head_dim**-0.5  # (B, nh, T, window)
        scores = scores.masked_fill(~valid, float("-inf"))
        probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)
        return (probs.unsqueeze(-2) @ v_win.transpose(-1, -2)).squeeze(-2)


class TransformerLayer(nn.Module):
    def __init__(self, cfg: CodecDecoderConfig):
        super().__init__()
        self.self_attn = Attention(cfg)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn_layer_scale = LayerScale(cfg.hidden_size, cfg.layer_scale_initial_scale)
        self.mlp_layer_scale = LayerScale(cfg.hidden_size, cfg.layer_scale_initial_scale)

    def forward(self, x: torch.Tensor, rope, valid: torch.Tensor, state: StreamState | None) -> torch.Tensor:
        x = x + self.self_attn_layer_scale(self.self_attn(self.input_layernorm(x), rope, valid, state))
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
        """cos, sin of shape (..., T, head_dim) for integer frame positions (..., T), computed in fp32."""
        exponent = torch.arange(0, self.head_dim, 2, dtype=torch.int64, device=positions.device).float() / self.head_dim
        inv_freq = 1.0 / (self.rope_theta**exponent)
        freqs = positions.float()[..., None] * inv_freq
        emb = torch.cat([freqs, freqs], dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        """x (B, T, latent). The stream position in ``state`` is an int, or a (B,) tensor when streams at different
        positions are decoded as one batch (``qwen_tts.codec.multistream``); rope and mask then go per row."""
        start = state.get(self, 0) if state is not None else 0
        t = x.shape[1]
        steps = torch.arange(t, device=x.device)
        if isinstance(start, torch.Tensor):
            positions = start.to(x.device)[:, None] + steps  # (B, T)
            rope = tuple(r[:, None] for r in self.rope(positions, x.dtype))  # (B, 1, T, hd): broadcast over heads
        else:
            positions = steps + int(start)
            rope = self.rope(positions, x.dtype)
        # Window slot j of the query at p holds frame p - window + 1 + j; slots before frame 0 are zero padding.
        valid = (positions[..., None] - self.window + 1 + torch.arange(self.window, device=x.device)) >= 0
        if valid.ndim == 3:
            valid = valid[:, None]  # (B, 1, T, window)
        h = self.input_proj(x)
        for layer in self.layers:
            h = layer(h, rope, valid, state)
        if state is not None:
            state[self] = start + t
        return self.output_proj(self.norm(h))
