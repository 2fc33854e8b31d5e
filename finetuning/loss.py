"""The fine-tuning loss: CE over codebook 0 from the talker + w * CE over codebooks 1..15 from the code predictor.

Aligned with generation (``qwen_tts.generate``), which fixes four bugs of the official ``sft_12hz.py`` +
``forward_sub_talker_finetune`` (qwen3-tts-model.md section 5; QwenLM/Qwen3-TTS issues #39, #179, #337, #371, PR #188,
#278):

1. text embeddings go through ``talker.text_projection`` (the official script skips it: 0.6B crashes, 1.7B trains on
   another distribution), and the mask is applied after the projection because the projection has biases;
2. the talker logits at position p are scored against the label at p + 1 exactly once (the official script slices
   inputs/labels by one and then hands them to transformers' ``ForCausalLMLoss``, which shifts again: frame j + 2);
3. the code predictor gets the talker hidden at p - 1 for the frame at p (the hidden that produced codebook 0, as
   ``past_hidden`` in generation), not the hidden at p, which has already seen the frame's own codes;
4. code-predictor head j is scored against codebook j (the official labels go through ``ForCausalLMLoss`` too, so
   head j learns codebook j + 1 and codebook 15 is never trained).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from finetuning.data import IGNORE_INDEX, NUM_CODE_GROUPS
from qwen_tts.talker import Talker


@dataclass
class LossOutput:
    """loss = talker_loss + w * sub_talker_loss (scalars); hidden (B, L, H) final-normed talker states."""

    loss: torch.Tensor
    talker_loss: torch.Tensor
    sub_talker_loss: torch.Tensor
    hidden: torch.Tensor


def talker_input_embeds(talker: Talker, batch: dict[str, torch.Tensor], speaker_vector: torch.Tensor) -> torch.Tensor:
    """Batch fields (B, L[, 16]) + speaker x-vector (H,) or (B, H) -> talker inputs (B, L, H).

    text track: text_projection(text_embedding(ids)), then masked (fix 1); codec track: codec_embedding(ids) masked;
    the speaker position adds the x-vector; frame positions add the codebook 1..15 embeddings of the code predictor.
    """
    mask = {k: batch[k].unsqueeze(-1) for k in ("text_mask", "codec_mask", "speaker_mask", "frame_mask")}
    weight = talker.model.codec_embedding.weight
    text = talker.text_projection(talker.model.text_embedding(batch["text_ids"])) * mask["text_mask"]
    embeds = text + talker.model.codec_embedding(batch["codec_ids"]) * mask["codec_mask"]
    vector = speaker_vector.to(device=weight.device, dtype=embeds.dtype)
    vector = vector[:, None, :] if vector.ndim == 2 else vector[None, None, :]
    embeds = embeds + vector * mask["speaker_mask"]
    codes = batch["frame_codes"]
    for group in range(1, NUM_CODE_GROUPS):
        embeds = embeds + talker.code_predictor.embed(group, codes[..., group]) * mask["frame_mask"]
    return embeds


def talker_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """logits (B, L, V), labels (B, L) -> mean CE of logits[:, p] vs labels[:, p + 1] over labelled positions (fix 2)."""
    shifted = logits[:, :-1].reshape(-1, logits.shape[-1]).float()
    return F.cross_entropy(shifted, labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX)


def code_predictor_loss(talker: Talker, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Talker hidden (B, L, H) + frames -> mean CE of the 15 predictor heads vs codebooks 1..15 (fixes 3 and 4).

    The frame at position p is predicted from the hidden at p - 1, then [hidden, E0(c0), E1(c1) .. E14(c14)] runs
    through the predictor and ``lm_head[j-1]`` at position j scores codebook j.
    """
    frame_mask = batch["frame_mask"]
    past_hidden = hidden[:, :-1][frame_mask[:, 1:]]  # (N, H): hidden at p - 1 for every frame position p
    codes = batch["frame_codes"][frame_mask]  # (N, 16), same (row, position) order as past_hidden
    predictor = talker.code_predictor
    logits = predictor.full_logits(past_hidden, codes, talker.codec_embed(codes[:, 0]))  # (N, 15, 2048)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), codes[:, 1:].reshape(-1))


def compute_loss(
    talker: Talker, batch: dict[str, torch.Tensor], speaker_vector: torch.Tensor, sub_talker_loss_weight: float
) -> LossOutput:
    """The whole fine-tuning loss on one collated batch (see the module docstring)."""
    embeds = talker_input_embeds(talker, batch, speaker_vector)
    # right-padded batch: the causal mask alone keeps padding out of every real position
    hidden = talker.model.run_layers(embeds, None)
    main = talker_loss(talker.codec_head(hidden), batch["labels"])
    sub = code_predictor_loss(talker, hidden, batch)
    return LossOutput(loss=main + sub_talker_loss_weight * sub, talker_loss=main, sub_talker_loss=sub, hidden=hidden)
