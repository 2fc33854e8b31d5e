"""Prompt assembly for the three checkpoint types: ids per position first, embeddings second.

``build_layout`` turns one request into a ``Layout``: for every prefill position, the text-track id (or None) and the
codec-track entry (a codec id, ``SPEAKER`` for the speaker vector, ``("ref", i)`` for reference frame i, or None),
plus the text ids added at decode steps (``trailing``). ``embed_layouts`` turns a batch of layouts into left-padded
talker inputs. The layout follows the official package exactly (see qwen3-tts-model.md section 2.8):

1. optional instruct block (text only); 2. role ``<|im_start|>assistant\\n`` (text only); 3. codec prefix
``[nothink, think_bos, think_eos]`` or ``[think, think_bos, lang, think_eos]``, then the speaker vector if any, then
``codec_pad`` (text track ``pad`` everywhere, ``bos`` on the ``codec_pad`` position); 4. the body (non-streaming: all
text over ``codec_pad``, ``eos``, then ``pad + codec_bos``; streaming: first text token over ``codec_bos``, the rest
trailing; ICL: reference transcript + text against ``codec_bos`` + reference frames).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from qwen_tts.config import Qwen3TTSConfig
from qwen_tts.talker import Talker

SPEAKER = "speaker"
TextEntry = int | None
CodecEntry = int | str | tuple[str, int] | None


@dataclass
class Layout:
    """Prefill positions as (text id | None, codec entry) pairs, and the trailing text ids for decode steps."""

    text: list[TextEntry] = field(default_factory=list)
    codec: list[CodecEntry] = field(default_factory=list)
    trailing: list[int] = field(default_factory=list)

    def add(self, text: TextEntry, codec: CodecEntry) -> None:
        self.text.append(text)
        self.codec.append(codec)

    def __len__(self) -> int:
        return len(self.text)


@dataclass
class TalkerInputs:
    """A left-padded batch ready for prefill.

    embeds (B, L, H), mask (B, L) bool (True = real position), trailing (B, N, H) right-padded with the pad embedding,
    pad_embed (H,) added at every decode step past the trailing text.
    """

    embeds: torch.Tensor
    mask: torch.Tensor
    trailing: torch.Tensor
    pad_embed: torch.Tensor

    @property
    def lengths(self) -> torch.Tensor:
        return self.mask.sum(dim=1)


def supported_languages(config: Qwen3TTSConfig) -> list[str]:
    """``auto`` plus every codec language that is not a dialect tag (as the official package lists them)."""
    return ["auto", *sorted(k for k in config.talker_config.codec_language_id if "dialect" not in k)]


def resolve_language(config: Qwen3TTSConfig, language: str | None) -> str:
    lang = (language or "auto").lower()
    allowed = supported_languages(config)
    if lang not in allowed:
        raise ValueError(f"unknown language {language!r}; this checkpoint supports {allowed}")
    return lang


def resolve_speaker(config: Qwen3TTSConfig, speaker: str | None) -> str | None:
    """Lower-cased preset speaker name, checked against ``spk_id``."""
    if speaker is None or speaker == "":
        return None
    allowed = sorted(config.talker_config.spk_id)
    if speaker.lower() not in config.talker_config.spk_id:
        if not allowed:
            raise ValueError(
                f"speaker {speaker!r} given, but this {config.tts_model_type} checkpoint has no preset speakers; "
                f"pass speaker_vector instead"
            )
        raise ValueError(f"unknown speaker {speaker!r}; this checkpoint has {allowed}")
    return speaker.lower()


def codec_prefix(config: Qwen3TTSConfig, language: str, speaker: str | None, has_speaker_vector: bool) -> list:
    """S = K ++ [speaker] ++ [codec_pad, codec_bos] (language already resolved, speaker lower-case or None)."""
    tc = config.talker_config
    lang_id = None if language == "auto" else tc.codec_language_id[language]
    dialect = tc.spk_is_dialect.get(speaker) if speaker else False
    if language in ("chinese", "auto") and dialect:
        lang_id = tc.codec_language_id[dialect]
    if lang_id is None:
        prefix: list = [tc.codec_nothink_id, tc.codec_think_bos_id, tc.codec_think_eos_id]
    else:
        prefix = [tc.codec_think_id, tc.codec_think_bos_id, lang_id, tc.codec_think_eos_id]
    if has_speaker_vector:
        prefix.append(SPEAKER)
    return [*prefix, tc.codec_pad_id, tc.codec_bos_id]


def build_layout(
    config: Qwen3TTSConfig,
    role_ids: list[int],
    text_ids: list[int],
    *,
    language: str = "auto",
    speaker: str | None = None,
    has_speaker_vector: bool = False,
    instruct_ids: list[int] | None = None,
    ref_ids: list[int] | None = None,
    num_ref_frames: int = 0,
    non_streaming: bool = True,
) -> Layout:
    """Ids per prefill position for one request (inputs already validated; see ``qwen_tts.api`` for checks)."""
    if not text_ids:
        raise ValueError("the text is empty after tokenization; give at least one word to speak")
    pad, bos, eos = config.tts_pad_token_id, config.tts_bos_token_id, config.tts_eos_token_id
    tc = config.talker_config
    layout = Layout()
    for tid in instruct_ids or []:
        layout.add(tid, None)
    for tid in role_ids:
        layout.add(tid, None)
    prefix = codec_prefix(config, language, speaker, has_speaker_vector)
    for i, entry in enumerate(prefix[:-1]):
        layout.add(bos if i == len(prefix) - 2 else pad, entry)
    if ref_ids is not None:
        _icl_body(layout, [*ref_ids, *text_ids, eos], num_ref_frames, tc.codec_pad_id, tc.codec_bos_id, pad,
                  non_streaming)  # fmt: skip
    elif non_streaming:
        for tid in [*text_ids, eos]:
            layout.add(tid, tc.codec_pad_id)
        layout.add(pad, tc.codec_bos_id)
    else:
        layout.add(text_ids[0], tc.codec_bos_id)
        layout.trailing = [*text_ids[1:], eos]
    return layout


def _icl_body(layout: Layout, text: list[int], frames: int, codec_pad: int, codec_bos: int, pad: int, non_streaming):
    codec: list[CodecEntry] = [codec_bos, *(("ref", i) for i in range(frames))]
    if non_streaming:
        for tid in text:
            layout.add(tid, codec_pad)
        for entry in codec:
            layout.add(pad, entry)
        return
    for i, entry in enumerate(codec):
        layout.add(text[i] if i < len(text) else pad, entry)
    layout.trailing = text[len(codec) :]


def embed_layout(
    talker: Talker,
    layout: Layout,
    speaker_vector: torch.Tensor | None = None,
    ref_codes: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One layout -> (prefill embeds (L, H), trailing text embeds (N, H)); N may be 0."""
    weight = talker.model.codec_embedding.weight
    device, dtype = weight.device, weight.dtype
    n, hidden = len(layout), weight.shape[1]
    text_pos = [i for i, t in enumerate(layout.text) if t is not None]
    out = torch.zeros(n, hidden, device=device, dtype=dtype)
    if text_pos:
        ids = torch.tensor([layout.text[i] for i in text_pos], device=device)
        out[text_pos] = talker.text_embed(ids)
    codec_pos = [i for i, c in enumerate(layout.codec) if isinstance(c, int)]
    if codec_pos:
        ids = torch.tensor([layout.codec[i] for i in codec_pos], device=device)
        out[codec_pos] = out[codec_pos] + talker.codec_embed(ids)
    for i, entry in enumerate(layout.codec):
        if entry == SPEAKER:
            if speaker_vector is None:
                raise ValueError("the layout has a speaker position but no speaker vector was given")
            out[i] = out[i] + speaker_vector.to(device=device, dtype=dtype)
    ref_pos = [(i, c[1]) for i, c in enumerate(layout.codec) if isinstance(c, tuple)]
    if ref_pos:
        if ref_codes is None:
            raise ValueError("the layout has reference frames but no ref_codes were given")
        frames = talker.frame_embed(ref_codes.to(device)[[j for _, j in ref_pos]])
        rows = [i for i, _ in ref_pos]
        out[rows] = out[rows] + frames
    trailing = (
        talker.text_embed(torch.tensor(layout.trailing, device=device))
        if layout.trailing
        else torch.zeros(0, hidden, device=device, dtype=dtype)
    )
    return out, trailing


def embed_layouts(talker: Talker, config: Qwen3TTSConfig, items: list[tuple[Layout, dict[str, Any]]]) -> TalkerInputs:
    """A batch of (layout, {"speaker_vector":..., "ref_codes":...}) -> left-padded ``TalkerInputs``."""
    weight = talker.model.codec_embedding.weight
    pad_embed = talker.text_embed(torch.tensor([config.tts_pad_token_id], device=weight.device))[0]
    parts = [embed_layout(talker, layout, **extras) for layout, extras in items]
    batch, longest = len(parts), max(p[0].shape[0] for p in parts)
    trailing_len = max(1, max(p[1].shape[0] for p in parts))
    embeds = torch.zeros(batch, longest, weight.shape[1], device=weight.device, dtype=weight.dtype)
    mask = torch.zeros(batch, longest, dtype=torch.bool, device=weight.device)
    trailing = pad_embed.expand(batch, trailing_len, -1).clone()
    for row, (prefill, trail) in enumerate(parts):
        embeds[row, longest - prefill.shape[0] :] = prefill
        mask[row, longest - prefill.shape[0] :] = True
        trailing[row, : trail.shape[0]] = trail
    return TalkerInputs(embeds=embeds, mask=mask, trailing=trailing, pad_embed=pad_embed)
