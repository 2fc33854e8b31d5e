"""Low-overhead inference path: the same math as the modules, with fewer and larger tensor ops.

``pack(model)`` fuses, per decoder layer, q/k/v into one weight and gate/up into one weight, and all 16 codec
embedding tables into one table; the module parameters are re-pointed to views of the fused tensors, so no memory
is duplicated and ``state_dict()`` is unchanged. ``FastStack.forward`` then runs a layer as ~15 tensor ops with no
``nn.Module`` calls (q and k are normalised and rotated together). ``FastStepper`` plugs this into the generator.

The eager module path (``qwen_tts.stepper.Stepper``) stays the reference; ``QWEN_TTS_EAGER=1`` selects it.
A packed model must be re-packed after it is moved (``pack`` checks this itself and does it when needed).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from qwen_tts.layers import DecoderStack, KVCache
from qwen_tts.sampling import SamplingParams, choose, subtalker_scores
from qwen_tts.stepper import Stepper


def _fuse(params: list[torch.nn.Parameter]) -> torch.Tensor:
    """Concatenate along dim 0 and re-point each parameter to its slice of the result."""
    fused = torch.cat([p.data for p in params], dim=0)
    start = 0
    for p in params:
        p.data = fused[start : start + p.shape[0]]
        start += p.shape[0]
    return fused


class FastLayer:
    """Fused weights of one DecoderLayer (views shared with the module)."""

    def __init__(self, layer, cfg):
        attn, mlp = layer.self_attn, layer.mlp
        self.heads, self.kv_heads, self.head_dim = attn.num_heads, attn.num_kv_heads, attn.head_dim
        self.w_qkv = _fuse([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight])
        self.b_qkv = None
        if attn.q_proj.bias is not None:
            self.b_qkv = _fuse([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias])
        self.b_o = attn.o_proj.bias
        d = self.head_dim
        self.qk_norm = torch.cat(
            [attn.q_norm.weight.detach().expand(self.heads, d), attn.k_norm.weight.detach().expand(self.kv_heads, d)]
        )
        self.w_o = attn.o_proj.weight
        self.w_gate_up = _fuse([mlp.gate_proj.weight, mlp.up_proj.weight])
        self.w_down = mlp.down_proj.weight
        self.ln1, self.ln2 = layer.input_layernorm.weight, layer.post_attention_layernorm.weight
        self.eps, self.inter = cfg.rms_norm_eps, cfg.intermediate_size


class FastStack:
    """Functional forward of a DecoderStack (talker.model or code_predictor.model) over fused weights."""

    def __init__(self, stack: DecoderStack):
        cfg = stack.config
        self.layers = [FastLayer(layer, cfg) for layer in stack.layers]
        self.norm, self.eps, self.hidden = stack.norm.weight, cfg.rms_norm_eps, cfg.hidden_size
        self.rotary = stack.rotary
        self.half = cfg.attn_head_dim // 2
        # fp32: the weight can go inside rms_norm (same rounding). Half precision: normalise, round, then multiply,
        # as the modules (and the official code) do.
        self.weight_inside = self.norm.dtype == torch.float32

    def rms(self, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        if self.weight_inside:
            return torch.rms_norm(x, (x.shape[-1],), weight, eps)
        return torch.rms_norm(x, (x.shape[-1],), None, eps) * weight

    def rope(self, positions: torch.Tensor | None, start: int, length: int, device, dtype):
        """(cos, signed sin) broadcastable to (B, L, heads, D): rotate_half(x) * sin == roll(x) * signed_sin."""
        if positions is None:
            cos, sin = self.rotary.lookup_range(start, length, device, dtype)  # (1, 1, L, D)
        else:
            cos, sin = self.rotary.lookup(positions, dtype)  # (B, 1, L, D)
        cos, sin = cos.transpose(1, 2), sin.transpose(1, 2)  # (., L, 1, D)
        signed = torch.cat((-sin[..., : self.half], sin[..., self.half :]), dim=-1)
        return cos, signed

    def forward(self, h, rope, mask, cache: KVCache | None, start: int | torch.Tensor) -> torch.Tensor:
        """h (B, L, H) -> final-normed hidden (B, L, H); same contract as ``DecoderStack.run_layers``."""
        cos, sin = rope
        b, n, _ = h.shape
        for i, lay in enumerate(self.layers):
            hq, hk, d = lay.heads, lay.kv_heads, lay.head_dim
            x = self.rms(h, lay.ln1, lay.eps)
            qkv = F.linear(x, lay.w_qkv, lay.b_qkv).view(b, n, hq + 2 * hk, d)
            qk = torch.rms_norm(qkv[:, :, : hq + hk], (d,), None, lay.eps) * lay.qk_norm
            qk = (qk * cos + qk.roll(self.half, dims=-1) * sin).transpose(1, 2)
            q, k, v = qk[:, :hq], qk[:, hq:], qkv[:, :, hq + hk :].transpose(1, 2)
            if cache is not None:
                k, v = cache.update(i, k, v, start)
            causal = mask is None and n > 1 and k.shape[2] == n
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=hq != hk)
            h = h + F.linear(out.transpose(1, 2).reshape(b, n, hq * d), lay.w_o, lay.b_o)
            x = self.rms(h, lay.ln2, lay.eps)
            gate_up = F.linear(x, lay.w_gate_up)
            h = h + F.linear(F.silu(gate_up[..., : lay.inter]) * gate_up[..., lay.inter :], lay.w_down)
        return self.rms(h, self.norm, self.eps)


class PackedModel:
    """Fused views of a Qwen3TTSModel's talker for the fast path."""

    def __init__(self, model):
        talker = model.talker
        cp = talker.code_predictor
        self.talker = FastStack(talker.model)
        self.predictor = FastStack(cp.model)
        tables = [talker.model.codec_embedding.weight] + [e.weight for e in cp.model.codec_embedding]
        self.codec_table = _fuse(tables)
        sizes = [t.shape[0] for t in tables]
        offsets = torch.tensor([0, *sizes[:-1]], device=self.codec_table.device).cumsum(0)
        self.offsets = offsets  # (16,) row offset of each codebook in codec_table
        self.cp_tables = [e.weight for e in cp.model.codec_embedding]
        self.c0_table = talker.model.codec_embedding.weight
        self.heads = [head.weight for head in cp.lm_head]
        proj = cp.small_to_mtp_projection
        self.proj = (proj.weight, proj.bias) if isinstance(proj, torch.nn.Linear) else None
        self.codec_head = talker.codec_head.weight
        self.signature = _signature(model)

    def frame_embed(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, 16) -> (B, H): one gather from the fused table, then the same 16-term sum as the modules."""
        return F.embedding(codes + self.offsets, self.codec_table).sum(dim=-2)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.proj is None else F.linear(x, *self.proj)


def _signature(model) -> tuple:
    """Where and which version of each talker weight: changes when the model moves or is edited in place."""
    return tuple((p.data_ptr(), p._version, p.device) for p in model.talker.parameters())


def pack(model) -> PackedModel:
    """The model's PackedModel, built (or rebuilt after a move / in-place edit) on demand."""
    packed = getattr(model, "_packed", None)
    if packed is None or packed.signature != _signature(model):
        packed = PackedModel(model)
        model._packed = packed
    return packed


class SlicedCache:
    """A KVCache whose write and read views for fixed slot ranges are built once (the predictor's steps are fixed),
    so an update is two copies and no slicing."""

    def __init__(self, cache: KVCache, ranges: list[tuple[int, int]]):
        self.cache = cache
        self.views = {
            start: [
                (cache.k[i][:, :, start : start + n], cache.v[i][:, :, start : start + n],
                 cache.k[i][:, :, : start + n], cache.v[i][:, :, : start + n])
                for i in range(cache.k.shape[0])
            ]
            for start, n in ranges
        }  # fmt: skip

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor, start: int):
        write_k, write_v, read_k, read_v = self.views[start][layer]
        write_k.copy_(k)
        write_v.copy_(v)
        return read_k, read_v


class FastStepper(Stepper):
    """``Stepper`` with the code predictor and the talker step on the fused functional path."""

    def __init__(self, model, inputs, cache_len: int):
        super().__init__(model, inputs, cache_len)
        self.packed = pack(model)
        # Predictor step j writes its inputs at these (start slot, length): past_hidden + C(c0) first, then one code.
        ranges = [(0, 2)] + [(j, 1) for j in range(2, len(self.packed.heads) + 1)]
        self.cp_cache = SlicedCache(self.cp_cache, ranges)
        weight = self.packed.codec_table
        self.cp_rope = [self.packed.predictor.rope(None, start, n, weight.device, weight.dtype) for start, n in ranges]

    def predict(self, past_hidden, c0, params: SamplingParams, gen):
        if params.subtalker_greedy:
            return self.predict_codes(past_hidden, c0, lambda logits, j: logits.argmax(dim=-1))
        return self.predict_codes(
            past_hidden, c0, lambda logits, j: choose(subtalker_scores(logits, params), False, gen)
        )

    def predict_codes(self, past_hidden: torch.Tensor, c0: torch.Tensor, pick) -> torch.Tensor:
        """(B, H), (B,) -> codes (B, 16); ``pick(logits (B, V), j)`` -> (B,) chooses codebook j + 1."""
        p = self.packed
        x = p.project(torch.stack((past_hidden, F.embedding(c0, p.c0_table)), dim=1))
        codes = [c0]
        for j in range(len(p.heads)):
            h = p.predictor.forward(x, self.cp_rope[j], None, self.cp_cache, 0 if j == 0 else j + 1)
            code = pick(F.linear(h[:, -1], p.heads[j]), j)
            codes.append(code)
            if j + 1 < len(p.heads):
                x = p.project(F.embedding(code, p.cp_tables[j])[:, None])
        return torch.stack(codes, dim=1)

    def talker_step(self, codes, text, step):
        p = self.packed
        slot = self.prompt_len + step
        x = (p.frame_embed(codes) + text)[:, None]
        weight = p.codec_table
        if self.padded:
            rope = p.talker.rope(self.lengths + step, 0, 1, weight.device, weight.dtype)
            h = p.talker.forward(x, rope, self.valid[:, None, None, : slot + 1], self.cache, slot)
        else:
            h = p.talker.forward(x, p.talker.rope(None, slot, 1, weight.device, weight.dtype), None, self.cache, slot)
        last = h[:, -1]
        return F.linear(last, p.codec_head), last
