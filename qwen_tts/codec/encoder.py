"""Codec encoder: 24 kHz mono audio -> (T, 16) codes, by transformers' ``MimiModel`` built from ``encoder_config``.

The official encoder is a MimiModel with its decoder half removed; its weights sit under ``encoder.*`` with Mimi's own
names. It runs the whole RVQ (32 quantizers in the release) and keeps the first ``encoder_valid_num_quantizers``.
Items of a batch are right-padded with zeros (as the official feature extractor does) and each keeps
ceil(valid_samples / 1920) frames.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from qwen_tts.checkpoint import CheckpointError, check_state_dict, one_line

log = logging.getLogger(__name__)

_DROPPED = ("upsample", "decoder_transformer", "decoder")


def build_encoder(
    encoder_config: dict[str, Any], state: dict[str, torch.Tensor], where: str = "codec encoder weights"
) -> torch.nn.Module:
    """A MimiModel without its decoder half, loaded strictly from ``state`` (keys without the ``encoder.`` prefix);
    CheckpointError naming ``where`` when the config or the keys do not fit."""
    from transformers import MimiConfig, MimiModel

    try:
        model = MimiModel(MimiConfig(**encoder_config))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: encoder_config is not a valid MimiConfig ({one_line(exc)})") from exc
    for name in _DROPPED:  # never used for encoding; the checkpoint has no weights for them
        setattr(model, name, None)
    unused = {k for k in state if k.split(".", 1)[0] in _DROPPED}
    if unused:  # a checkpoint saved from a full MimiModel: the official loader ignores these too
        log.info("ignoring %d Mimi decoder-half tensors (e.g. %s)", len(unused), min(unused))
    kept = {k: v for k, v in state.items() if k not in unused}
    check_state_dict({k: v.shape for k, v in model.state_dict().items()}, kept, where)
    model.load_state_dict(kept, strict=True)
    return model.eval()


@torch.inference_mode()
def encode_batch(
    encoder: torch.nn.Module, waves: list[torch.Tensor], num_quantizers: int, samples_per_frame: int
) -> list[torch.Tensor]:
    """waves: list of (N_i,) float32 at 24 kHz -> list of (ceil(N_i / samples_per_frame), num_quantizers) int64."""
    param = next(encoder.parameters())
    longest = max(w.shape[0] for w in waves)
    batch = torch.zeros(len(waves), 1, longest, dtype=param.dtype, device=param.device)
    for i, w in enumerate(waves):
        batch[i, 0, : w.shape[0]] = w.to(device=param.device, dtype=param.dtype)
    codes = encoder.encode(input_values=batch, return_dict=True).audio_codes[:, :num_quantizers]  # (B, K, T)
    return [codes[i, :, : -(-w.shape[0] // samples_per_frame)].transpose(0, 1).long() for i, w in enumerate(waves)]
