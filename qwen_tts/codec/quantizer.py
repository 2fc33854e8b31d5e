"""Split residual vector quantizer of the codec decoder: codes -> continuous latents (dequantisation only).

Codebook 0 goes through ``rvq_first``, codebooks 1..15 through ``rvq_rest``. Each codebook entry is stored as
``embedding_sum / clamp(cluster_usage, 1e-5)`` (EMA statistics); entries of one stage are summed, then projected by
that stage's 1x1 ``output_proj`` and the two stages are added. ``input_proj`` exists in the checkpoint but is only
used for quantising, which the decoder never does. Attribute names equal the ``decoder.quantizer.*`` keys.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CLUSTER_USAGE_EPS = 1e-5


class Codebook(nn.Module):
    def __init__(self, codebook_size: int, dim: int):
        super().__init__()
        self.cluster_usage = nn.Parameter(torch.ones(codebook_size))
        self.embedding_sum = nn.Parameter(torch.zeros(codebook_size, dim))

    def table(self) -> torch.Tensor:
        """(codebook_size, dim) entries."""
        return self.embedding_sum / self.cluster_usage.clamp(min=CLUSTER_USAGE_EPS)[:, None]


class VectorQuantization(nn.Module):
    def __init__(self, codebook_size: int, dim: int):
        super().__init__()
        self._codebook = Codebook(codebook_size, dim)


class ResidualLayers(nn.Module):
    def __init__(self, num_quantizers: int, codebook_size: int, dim: int):
        super().__init__()
        self.layers = nn.ModuleList(VectorQuantization(codebook_size, dim) for _ in range(num_quantizers))


class ResidualVectorQuantizer(nn.Module):
    """One RVQ stage: sum of per-codebook entries, then a 1x1 conv dim -> codebook_dim (no bias)."""

    def __init__(self, num_quantizers: int, codebook_size: int, codebook_dim: int):
        super().__init__()
        dim = codebook_dim // 2
        self.vq = ResidualLayers(num_quantizers, codebook_size, dim)
        self.input_proj = nn.Conv1d(codebook_dim, dim, 1, bias=False)
        self.output_proj = nn.Conv1d(dim, codebook_dim, 1, bias=False)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, K, T) int64 -> (B, codebook_dim, T)."""
        summed = 0
        for k, layer in enumerate(self.vq.layers):
            summed = summed + F.embedding(codes[:, k], layer._codebook.table())  # (B, T, dim)
        return self.output_proj(summed.transpose(1, 2))


class SplitResidualVectorQuantizer(nn.Module):
    def __init__(self, num_quantizers: int, num_semantic: int, codebook_size: int, codebook_dim: int):
        super().__init__()
        self.num_semantic = num_semantic
        self.rvq_first = ResidualVectorQuantizer(num_semantic, codebook_size, codebook_dim)
        self.rvq_rest = ResidualVectorQuantizer(num_quantizers - num_semantic, codebook_size, codebook_dim)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, K, T) in [0, codebook_size) -> latents (B, codebook_dim, T)."""
        out = self.rvq_first.decode(codes[:, : self.num_semantic])
        return out + self.rvq_rest.decode(codes[:, self.num_semantic :])
