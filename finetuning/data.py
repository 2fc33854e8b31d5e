"""Training examples: one transcript + its codec frames -> the talker's two-track training layout, and ``collate``.

The layout is the inference prompt of ``qwen_tts.prompt.build_layout`` in non-streaming mode with language "auto"
and a speaker position (qwen3-tts-model.md sections 2.8 and 5), followed by the target frames and codec EOS:

    pos      role(3)  nothink think_bos think_eos SPK  codec_pad | T_1..T_n   eos      | pad       | frames...  | pad
    codec    -        ids of the codec prefix          x-vector    | codec_pad  codec_pad| codec_bos | c0 (+c1..c15) | eos
    label    -100 ..........................................................................  -100    | c0 ...     | eos

Labels hold the token AT each position; the loss compares logits at p with the label at p + 1, so the ``codec_bos``
position predicts the first frame's codebook 0 and the last frame predicts EOS, exactly as in generation.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from qwen_tts.config import Qwen3TTSConfig
from qwen_tts.prompt import SPEAKER, build_layout

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
NUM_CODE_GROUPS = 16


@dataclass
class Example:
    """One training sequence of length L (every field is indexed by position).

    text_ids (L,) int64 text-track ids (0 where ``text_mask`` is False); codec_ids (L,) int64 codec-track ids of the
    prefix, codec_bos, codebook 0 of the frames and EOS (0 where ``codec_mask`` is False); speaker_mask (L,) bool, the
    one position that takes the speaker x-vector; frame_codes (L, 16) int64 all codebooks at frame positions
    (``frame_mask``); labels (L,) int64 codebook-0 targets or -100.
    """

    text_ids: torch.Tensor
    text_mask: torch.Tensor
    codec_ids: torch.Tensor
    codec_mask: torch.Tensor
    speaker_mask: torch.Tensor
    frame_codes: torch.Tensor
    frame_mask: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.text_ids.shape[0])


def check_codes(codes: torch.Tensor, codebook_size: int, where: str) -> torch.Tensor:
    """codes (T, 16) integers in [0, codebook_size) -> int64 tensor; ValueError naming ``where`` otherwise."""
    codes = torch.as_tensor(codes)
    if codes.ndim != 2 or codes.shape[1] != NUM_CODE_GROUPS or codes.shape[0] == 0:
        raise ValueError(f"{where}: audio_codes must be a non-empty list of {NUM_CODE_GROUPS}-code frames, "
                         f"got shape {tuple(codes.shape)}; rerun finetuning.prepare_data")  # fmt: skip
    if codes.is_floating_point() or int(codes.min()) < 0 or int(codes.max()) >= codebook_size:
        raise ValueError(f"{where}: audio_codes must be integers in [0, {codebook_size}); rerun prepare_data")
    return codes.long()


def build_example(config: Qwen3TTSConfig, role_ids: list[int], text_ids: list[int], codes: torch.Tensor) -> Example:
    """Role ids (3) + text ids T + frames (T_frames, 16) -> the training ``Example`` (see the module docstring)."""
    tc = config.talker_config
    layout = build_layout(config, role_ids, text_ids, language="auto", has_speaker_vector=True, non_streaming=True)
    prompt_len, frames = len(layout), codes.shape[0]
    length = prompt_len + frames + 1
    ex = Example(
        text_ids=torch.zeros(length, dtype=torch.long), text_mask=torch.zeros(length, dtype=torch.bool),
        codec_ids=torch.zeros(length, dtype=torch.long), codec_mask=torch.zeros(length, dtype=torch.bool),
        speaker_mask=torch.zeros(length, dtype=torch.bool),
        frame_codes=torch.zeros(length, NUM_CODE_GROUPS, dtype=torch.long),
        frame_mask=torch.zeros(length, dtype=torch.bool), labels=torch.full((length,), IGNORE_INDEX),
    )  # fmt: skip
    for pos, (text, codec) in enumerate(zip(layout.text, layout.codec, strict=True)):
        if text is not None:
            ex.text_ids[pos], ex.text_mask[pos] = text, True
        if codec == SPEAKER:
            ex.speaker_mask[pos] = True
        elif codec is not None:
            ex.codec_ids[pos], ex.codec_mask[pos] = int(codec), True
    body = slice(prompt_len, prompt_len + frames)
    ex.text_ids[prompt_len:], ex.text_mask[prompt_len:] = config.tts_pad_token_id, True
    ex.codec_ids[body], ex.codec_mask[body] = codes[:, 0], True
    ex.frame_codes[body], ex.frame_mask[body] = codes, True
    ex.labels[body] = codes[:, 0]
    ex.codec_ids[-1], ex.codec_mask[-1], ex.labels[-1] = tc.codec_eos_token_id, True, tc.codec_eos_token_id
    return ex


def collate(examples: list[Example]) -> dict[str, torch.Tensor]:
    """Right-pad a list of examples to the longest: every field (B, L[, 16]) plus ``attention_mask`` (B, L) bool.

    Right padding keeps positions 0..n-1 for every real token, and padded positions come after all real ones, so a
    plain causal mask leaves the real positions' hidden states unchanged (no padding mask is needed).
    """
    if not examples:
        raise ValueError("collate needs at least one example")
    longest = max(len(e) for e in examples)
    batch: dict[str, torch.Tensor] = {}
    for name in Example.__dataclass_fields__:
        first = getattr(examples[0], name)
        fill = IGNORE_INDEX if name == "labels" else 0
        out = torch.full((len(examples), longest, *first.shape[1:]), fill, dtype=first.dtype)
        for row, ex in enumerate(examples):
            out[row, : len(ex)] = getattr(ex, name)
        batch[name] = out
    batch["attention_mask"] = torch.zeros(len(examples), longest, dtype=torch.bool)
    for row, ex in enumerate(examples):
        batch["attention_mask"][row, : len(ex)] = True
    return batch


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Non-empty lines of a JSONL file as dicts; ValueError naming the line of any bad JSON."""
    records = []
    for no, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{no}: not valid JSON ({exc})") from exc
    if not records:
        raise ValueError(f"{path} has no records")
    return records


class SFTDataset(torch.utils.data.Dataset):
    """Records with ``text`` and ``audio_codes`` (T, 16) -> ``Example``s, tokenized once up front."""

    def __init__(self, records: list[dict[str, Any]], tokenizer, config: Qwen3TTSConfig):
        self.examples: list[Example] = []
        codebook = config.talker_config.codebook_size
        for i, rec in enumerate(records):
            where = f"record {i + 1}"
            text = rec.get("text")
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"{where}: 'text' must be a non-empty transcript, got {text!r}")
            if "audio_codes" not in rec:
                raise ValueError(f"{where}: no 'audio_codes'; run python -m finetuning.prepare_data first")
            codes = check_codes(torch.tensor(rec["audio_codes"]), codebook, where)
            role, text_ids = tokenizer.target_ids(text)
            self.examples.append(build_example(config, role, text_ids, codes))

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> Example:
        return self.examples[index]
