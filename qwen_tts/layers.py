"""Building blocks shared by the talker and the code predictor (Qwen3-style decoder).

RMSNorm (computed in fp32, cast back before the weight), rotary embeddings, grouped-query attention with RMSNorm on
q and k per head, SwiGLU MLP, a pre-norm decoder layer, and a static KV cache written at explicit slots.

Shapes: B batch, L new positions, S cached slots, H hidden, D head_dim. Attention masks are boolean (B, 1, L, S), True
where a query may attend; ``None`` means "causal over the slots written so far, no padding" (the fast path).
"""

from __future__ import annotations

import functools
import importlib.util

import torch
import torch.nn.functional as F
from torch import nn

from qwen_tts.config import _Transformer


class RMSNorm(nn.Module):
    """y = weight * (x / sqrt(mean(x^2) + eps)); the normalisation runs in fp32 and is cast back first."""

    def __init__(self, size: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:
            return self.weight * F.rms_norm(x, (x.shape[-1],), eps=self.eps)
        return self.weight * F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).to(x.dtype)


class RotaryTable:
    """cos/sin of rotate-half RoPE, built lazily per (device, dtype) up to the longest position seen.

    The talker's M-RoPE has three identical position streams (text only), which is numerically plain 1-D RoPE.
    The angles are computed in fp32 and cast to the activation dtype, as the official code does.
    """

    def __init__(self, head_dim: int, theta: float):
        self.inv_freq = 1.0 / (
            theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device="cpu").float() / head_dim)
        )
        self._tables: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    def table(self, length: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin), each (length', D) with length' >= length."""
        key = (torch.device(device), dtype)
        cached = self._tables.get(key)
        if cached is None or cached[0].shape[0] < length:
            size = max(length, 64 if cached is None else 2 * cached[0].shape[0])
            freqs = torch.arange(size, dtype=torch.float32, device="cpu")[:, None] * self.inv_freq[None, :]
            emb = torch.cat((freqs, freqs), dim=-1)
            cached = (emb.cos().to(device=device, dtype=dtype), emb.sin().to(device=device, dtype=dtype))
            self._tables[key] = cached
        return cached

    def lookup(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """positions (B, L) int64 -> cos, sin (B, 1, L, D) ready to broadcast over heads."""
        cos, sin = self.table(int(positions.max()) + 1, positions.device, dtype)
        return cos[positions].unsqueeze(1), sin[positions].unsqueeze(1)

    def lookup_range(self, start: int, length: int, device: torch.device, dtype: torch.dtype):
        """Same positions start..start+length-1 for every row: cos, sin (1, 1, L, D) (no gather, cheaper)."""
        cos, sin = self.table(start + length, device, dtype)
        return cos[start : start + length][None, None], sin[start : start + length][None, None]


@functools.cache
def flash_attn_func():
    """``flash_attn.flash_attn_func`` when FlashAttention-2 is installed, else None (looked up once, lazily)."""
    if importlib.util.find_spec("flash_attn") is None:
        return None
    from flash_attn import flash_attn_func as func

    return func


def _use_flash(q: torch.Tensor, mask: torch.Tensor | None, causal: bool) -> bool:
    """FlashAttention-2 for unpadded causal prefills on CUDA in fp16/bf16; SDPA for everything else."""
    return (
        causal and mask is None and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16) and bool(flash_attn_func())
    )


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class KVCache:
    """Static key/value cache for one decoder stack: k, v (layers, B, kv_heads, max_len, D).

    ``update`` writes L new entries at slot ``start`` (an int, eager path) or at the slot indices of a tensor (CUDA
    graph path, so the write position can change between replays) and returns the keys/values to attend over.
    """

    def __init__(self, cfg: _Transformer, batch: int, max_len: int, device: torch.device, dtype: torch.dtype):
        shape = (cfg.num_hidden_layers, batch, cfg.num_key_value_heads, max_len, cfg.attn_head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.max_len = max_len

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor, start: int | torch.Tensor):
        if isinstance(start, torch.Tensor):
            self.k[layer].index_copy_(2, start, k)
            self.v[layer].index_copy_(2, start, v)
            return self.k[layer], self.v[layer]
        end = start + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache overflow: need {end} slots, the cache has {self.max_len}")
        self.k[layer][:, :, start:end] = k
        self.v[layer][:, :, start:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]


class Attention(nn.Module):
    """GQA self-attention with q/k RMSNorm over head_dim before RoPE; no biases unless ``attention_bias``."""

    def __init__(self, cfg: _Transformer, layer_idx: int):
        super().__init__()
        d, bias = cfg.attn_head_dim, cfg.attention_bias
        self.layer_idx = layer_idx
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, d
        self.q_proj = nn.Linear(cfg.hidden_size, cfg.num_attention_heads * d, bias=bias)
        self.k_proj = nn.Linear(cfg.hidden_size, cfg.num_key_value_heads * d, bias=bias)
        self.v_proj = nn.Linear(cfg.hidden_size, cfg.num_key_value_heads * d, bias=bias)
        self.o_proj = nn.Linear(cfg.num_attention_heads * d, cfg.hidden_size, bias=bias)
        self.q_norm = RMSNorm(d, cfg.rms_norm_eps)
        self.k_norm = RMSNorm(d, cfg.rms_norm_eps)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor | None,
        cache: KVCache | None,
        start: int | torch.Tensor,
    ) -> torch.Tensor:
        """x (B, L, H) -> (B, L, H). Without a cache the L positions attend causally among themselves."""
        b, n, _ = x.shape
        q = self.q_norm(self.q_proj(x).view(b, n, self.num_heads, self.head_dim)).transpose(1, 2)
        k = self.k_norm(self.k_proj(x).view(b, n, self.num_kv_heads, self.head_dim)).transpose(1, 2)
        v = self.v_proj(x).view(b, n, self.num_kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = rope
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v, start)
        causal = mask is None and n > 1 and k.shape[2] == n
        if mask is None and n > 1 and not causal:
            raise ValueError("several new positions after cached ones need an explicit mask")
        if _use_flash(q, mask, causal):  # (B, L, heads, D) layout; GQA is native there
            out = flash_attn_func()(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), causal=True)
            return self.o_proj(out.reshape(b, n, self.num_heads * self.head_dim))
        gqa = self.num_heads != self.num_kv_heads
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=gqa)
        return self.o_proj(out.transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim))


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x)), no biases."""

    def __init__(self, cfg: _Transformer):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: _Transformer, layer_idx: int):
        super().__init__()
        self.self_attn = Attention(cfg, layer_idx)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x, rope, mask, cache, start):
        x = x + self.self_attn(self.input_layernorm(x), rope, mask, cache, start)
        return x + self.mlp(self.post_attention_layernorm(x))


class DecoderStack(nn.Module):
    """``layers`` + final ``norm`` (the common part of ``talker.model`` and ``code_predictor.model``)."""

    def __init__(self, cfg: _Transformer):
        super().__init__()
        self.config = cfg
        self.layers = nn.ModuleList(DecoderLayer(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.rotary = RotaryTable(cfg.attn_head_dim, cfg.rope_theta)

    def new_cache(self, batch: int, max_len: int, device=None, dtype=None) -> KVCache:
        param = self.norm.weight
        return KVCache(self.config, batch, max_len, device or param.device, dtype or param.dtype)

    def run_layers(
        self,
        h: torch.Tensor,
        positions: torch.Tensor | None,
        mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        start: int | torch.Tensor = 0,
    ) -> torch.Tensor:
        """h (B, L, H) -> final-normed hidden (B, L, H).

        positions (B, L) are RoPE positions; ``None`` means start..start+L-1 for every row (int ``start`` only).
        """
        if positions is None:
            rope = self.rotary.lookup_range(int(start), h.shape[1], h.device, h.dtype)
        else:
            rope = self.rotary.lookup(positions, h.dtype)
        for layer in self.layers:
            h = layer(h, rope, mask, cache, start)
        return self.norm(h)
