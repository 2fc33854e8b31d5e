"""Exact streaming decode: feed code frames as they are generated, get the audio they complete.

The decoder is causal end to end, so frame t's 1920 samples depend only on frames <= t. ``StreamingDecoder`` carries,
per stream, every causal conv's input history ((k-1)*dilation steps), each transposed conv's previous input frame
(its overlap), the ConvNeXt depthwise-conv history, and the rotated keys/values of the last 71 frames of each
pre-transformer layer (the attention window is 72 frames) plus the frame position. Pushing frames in any chunking
therefore yields the same samples as decoding the whole sequence at once (up to float rounding), and the first
1920 samples come out after the first frame.
"""

from __future__ import annotations

import logging

import torch

from qwen_tts.codec.convs import StreamState
from qwen_tts.codec.decoder import CodecDecoder

log = logging.getLogger(__name__)


def check_codes(codes: torch.Tensor, num_quantizers: int, codebook_size: int, allow_padding: bool) -> None:
    """Raise ValueError unless ``codes`` (..., T, num_quantizers) holds integers in [0, codebook_size).

    With ``allow_padding``, whole frames of -1 are allowed after the last real frame of each item.
    """
    if codes.dtype.is_floating_point or codes.dtype == torch.bool or codes.is_complex():
        raise ValueError(f"codes must be an integer tensor, got dtype {codes.dtype}")
    if codes.ndim not in (2, 3) or codes.shape[-1] != num_quantizers:
        raise ValueError(f"codes must be (T, {num_quantizers}) or (B, T, {num_quantizers}), got {tuple(codes.shape)}")
    if codes.numel() == 0:
        return
    low, high = int(codes.min()), int(codes.max())
    if high >= codebook_size or low < (-1 if allow_padding else 0):
        allowed = f"[0, {codebook_size - 1}]" + (" or -1 for padding" if allow_padding else "")
        bad = codes[(codes >= codebook_size) | (codes < (-1 if allow_padding else 0))][0]
        raise ValueError(f"code value {int(bad)} is out of range; codes must be in {allowed}")
    if low == -1:
        frames = codes.reshape(-1, codes.shape[-2], num_quantizers)
        is_pad = (frames == -1).all(-1)  # (B, T)
        if bool(((frames == -1).any(-1) & ~is_pad).any()):
            raise ValueError("a padding frame must be -1 in all codebooks, and a real frame must have no -1")
        if bool((is_pad[:, :-1] & ~is_pad[:, 1:]).any()):
            raise ValueError("-1 padding frames must come after all real frames of an item")


class StreamingDecoder:
    """Stateful exact decoder for one stream (or a fixed batch of streams decoded in lockstep).

    ``push(codes)`` takes the next frames, (n, 16) or (B, n, 16), and returns their audio, (n * 1920,) or
    (B, n * 1920) float32 on the decoder's device. ``frames`` counts the frames pushed so far.
    """

    def __init__(self, decoder: CodecDecoder):
        self.decoder = decoder
        self.state: StreamState = {}
        self.frames = 0
        self._batch: int | None = None

    @property
    def samples_per_frame(self) -> int:
        return self.decoder.total_upsample

    def reset(self) -> None:
        """Forget the stream; the next push starts a new utterance."""
        self.state = {}
        self.frames = 0
        self._batch = None

    @torch.inference_mode()
    def push(self, codes: torch.Tensor) -> torch.Tensor:
        """Decode the next frames. codes (n, K) or (B, n, K) int -> (n * 1920,) or (B, n * 1920) float32."""
        cfg = self.decoder.config
        codes = torch.as_tensor(codes)
        check_codes(codes, cfg.num_quantizers, cfg.codebook_size, allow_padding=False)
        single = codes.ndim == 2
        batch = codes.unsqueeze(0) if single else codes
        if self._batch is not None and batch.shape[0] != self._batch:
            raise ValueError(f"this stream decodes a batch of {self._batch}; got a push with batch {batch.shape[0]}")
        self._batch = batch.shape[0]
        if batch.shape[1] == 0:
            empty = batch.new_zeros((batch.shape[0], 0), dtype=torch.float32)
            return empty[0] if single else empty
        device = next(self.decoder.parameters()).device
        wav = self.decoder(batch.to(device=device, dtype=torch.long).transpose(1, 2), self.state)[:, 0]
        self.frames += batch.shape[1]
        return wav[0] if single else wav
