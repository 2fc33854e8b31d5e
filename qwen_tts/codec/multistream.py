"""Exact streaming decode of many independent streams, batched where their chunks line up.

    decoder = MultiStreamDecoder(codec.decoder)
    a, b = decoder.open(), decoder.open()
    audio = decoder.push({a: codes_a, b: codes_b})     # {stream: (n_i * 1920,) float32}
    decoder.close(a)

Each stream keeps its own ``StreamState`` (as ``StreamingDecoder`` does). A push decodes, as one batch, every stream
that brings the same number of frames and is in the same phase (fresh or started); the per-stream states are stacked
along the batch, run once, and split back. Streams at different positions share a batch because the pre-transformer
takes per-row positions. Every stream's audio equals its own whole decode (up to float rounding).
"""

from __future__ import annotations

import itertools
import threading
from collections import defaultdict

import torch

from qwen_tts.codec.convs import StreamState
from qwen_tts.codec.decoder import CodecDecoder
from qwen_tts.codec.streaming import check_codes
from qwen_tts.codec.transformer import PreTransformer


def _stack(states: list[StreamState]) -> StreamState:
    out: StreamState = {}
    for key, first in states[0].items():
        values = [s[key] for s in states]
        if isinstance(first, tuple):
            out[key] = tuple(torch.cat(parts, dim=0) for parts in zip(*values, strict=True))
        elif isinstance(first, torch.Tensor) and not isinstance(key, PreTransformer):
            out[key] = torch.cat(values, dim=0)
        else:  # the pre-transformer's frame position: int or (1,) tensor per stream -> (B,)
            out[key] = torch.cat([torch.as_tensor(v).reshape(1) for v in values])
    return out


def _split(state: StreamState, count: int) -> list[StreamState]:
    out: list[StreamState] = [{} for _ in range(count)]
    for key, value in state.items():
        for i in range(count):
            if isinstance(value, tuple):
                out[i][key] = tuple(part[i : i + 1] for part in value)
            elif isinstance(value, torch.Tensor) and isinstance(key, PreTransformer):
                out[i][key] = int(value[i]) if value.ndim else int(value)
            elif isinstance(value, torch.Tensor):
                out[i][key] = value[i : i + 1]
            else:
                out[i][key] = value
    return out


class MultiStreamDecoder:
    """Many exact streaming decodes over one ``CodecDecoder``. ``push`` is serialised by a lock."""

    def __init__(self, decoder: CodecDecoder):
        self.decoder = decoder
        self._states: dict[int, StreamState] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    @property
    def samples_per_frame(self) -> int:
        return self.decoder.total_upsample

    def open(self) -> int:
        with self._lock:
            stream = next(self._ids)
            self._states[stream] = {}
            return stream

    def close(self, stream: int) -> None:
        with self._lock:
            self._states.pop(stream, None)

    @property
    def open_streams(self) -> int:
        return len(self._states)

    @torch.inference_mode()
    def push(self, chunks: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        """{stream: codes (n, 16)} -> {stream: audio (n * 1920,) float32}; each stream at most once per call."""
        cfg = self.decoder.config
        for codes in chunks.values():
            check_codes(torch.as_tensor(codes), cfg.num_quantizers, cfg.codebook_size, allow_padding=False)
            if torch.as_tensor(codes).ndim != 2:
                raise ValueError("each stream pushes (n, 16) codes")
        with self._lock:
            unknown = [s for s in chunks if s not in self._states]
            if unknown:
                raise ValueError(f"streams {unknown} are not open")
            groups: dict[tuple[int, bool], list[int]] = defaultdict(list)
            for stream, codes in chunks.items():
                groups[(int(codes.shape[0]), not self._states[stream])].append(stream)
            out: dict[int, torch.Tensor] = {}
            for (frames, fresh), streams in groups.items():
                out.update(self._decode_group(streams, [chunks[s] for s in streams], frames, fresh))
            return out

    def _decode_group(self, streams: list[int], codes: list[torch.Tensor], frames: int, fresh: bool):
        device = next(self.decoder.parameters()).device
        if frames == 0:
            return {s: torch.zeros(0, device=device) for s in streams}
        batch = torch.stack([torch.as_tensor(c) for c in codes]).to(device=device, dtype=torch.long)
        state: StreamState = {} if fresh else _stack([self._states[s] for s in streams])
        wav = self.decoder(batch.transpose(1, 2), state)[:, 0]
        for stream, part in zip(streams, _split(state, len(streams)), strict=True):
            self._states[stream] = part
        return {s: wav[i] for i, s in enumerate(streams)}
