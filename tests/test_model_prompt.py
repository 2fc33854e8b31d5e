"""Prompt layouts: ids per position for every checkpoint type (qwen3-tts-model.md section 2.8), embeddings, padding."""

from __future__ import annotations

import pytest
import torch

from qwen_tts.loading import load_model
from qwen_tts.prompt import SPEAKER, build_layout, embed_layout, embed_layouts
from qwen_tts.tokenizer import TextTokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# Real codec ids (the tiny checkpoints keep them); tiny text ids: tts pad 3, bos 4, eos 5.
PAD, BOS, EOS = 3, 4, 5
C_PAD, C_BOS, THINK, NOTHINK, THINK_BOS, THINK_EOS = 2148, 2149, 2154, 2155, 2156, 2157
ENGLISH, CHINESE, SICHUAN = 2050, 2055, 2062


@pytest.fixture(scope="module")
def cv(tiny_custom_voice):
    return load_model(tiny_custom_voice), TextTokenizer.from_pretrained(tiny_custom_voice)


def _ids(tok, text="Hello world."):
    return tok.target_ids(text)


def test_role_and_text_slicing(cv):
    _, tok = cv
    role, text = _ids(tok, "Once upon a time")
    assert role == [1, tok.encode("assistant")[0], tok.encode("\n")[0]]
    assert tok.hf.decode(text) == "Once upon a time"


def test_custom_voice_non_streaming_english(cv):
    model, tok = cv
    role, text = _ids(tok)
    layout = build_layout(model.config, role, text, language="english", speaker="vivian", has_speaker_vector=True)
    n = len(text)
    assert layout.text == [*role, PAD, PAD, PAD, PAD, PAD, BOS, *text, EOS, PAD]
    assert layout.codec == [None] * 3 + [THINK, THINK_BOS, ENGLISH, THINK_EOS, SPEAKER, C_PAD] + [C_PAD] * (n + 1) + [
        C_BOS
    ]
    assert layout.trailing == []


def test_auto_language_matches_the_finetune_table(cv):
    """Section 5: positions 3..7 = nothink, think_bos, think_eos, speaker, codec_pad; then text over codec_pad."""
    model, tok = cv
    role, text = _ids(tok)
    layout = build_layout(model.config, role, text, language="auto", speaker="vivian", has_speaker_vector=True)
    assert len(layout) == 3 + 5 + len(text) + 2
    assert layout.codec[3:8] == [NOTHINK, THINK_BOS, THINK_EOS, SPEAKER, C_PAD]
    assert layout.text[3:8] == [PAD, PAD, PAD, PAD, BOS]
    assert layout.text[8 + len(text)] == EOS and layout.codec[8 + len(text) + 1] == C_BOS


def test_streaming_layout_puts_one_text_token_per_frame(cv):
    model, tok = cv
    role, text = _ids(tok, "Once upon a time, the dragon said hello.")
    layout = build_layout(model.config, role, text, speaker="vivian", has_speaker_vector=True, non_streaming=False)
    assert len(layout) == 3 + 5 + 1
    assert layout.text[-1] == text[0] and layout.codec[-1] == C_BOS
    assert layout.trailing == [*text[1:], EOS]


@pytest.mark.parametrize("language", ["chinese", "auto"])
def test_dialect_speaker_gets_its_dialect_tag(cv, language):
    model, tok = cv
    role, text = _ids(tok)
    layout = build_layout(model.config, role, text, language=language, speaker="eric", has_speaker_vector=True)
    assert layout.codec[3:7] == [THINK, THINK_BOS, SICHUAN, THINK_EOS]


def test_dialect_speaker_keeps_an_explicit_other_language(cv):
    model, tok = cv
    role, text = _ids(tok)
    layout = build_layout(model.config, role, text, language="english", speaker="eric", has_speaker_vector=True)
    assert layout.codec[3:7] == [THINK, THINK_BOS, ENGLISH, THINK_EOS]


def test_voice_design_instruct_comes_first_text_only(tiny_voice_design):
    model, tok = load_model(tiny_voice_design), TextTokenizer.from_pretrained(tiny_voice_design)
    role, text = _ids(tok)
    instruct = tok.instruct_ids("speak calm")
    layout = build_layout(model.config, role, text, language="chinese", instruct_ids=instruct)
    k = len(instruct)
    assert instruct[0] == 1 and instruct[-2:] == [2, tok.encode("\n")[0]]
    assert layout.text[:k] == instruct and layout.codec[:k] == [None] * k
    assert layout.text[k : k + 3] == role
    assert layout.codec[k + 3 : k + 8] == [THINK, THINK_BOS, CHINESE, THINK_EOS, C_PAD]  # no speaker position
    assert layout.text[k + 3 : k + 8] == [PAD, PAD, PAD, PAD, BOS]


def test_icl_streaming_and_non_streaming(tiny_base):
    model, tok = load_model(tiny_base), TextTokenizer.from_pretrained(tiny_base)
    role, text = _ids(tok, "Hello world, once upon a time.")
    ref = tok.ref_ids("the dragon")
    frames = 3
    stream = build_layout(model.config, role, text, has_speaker_vector=True, ref_ids=ref, num_ref_frames=frames,
                          non_streaming=False)  # fmt: skip
    body_text, body_codec = [*ref, *text, EOS], [C_BOS, *(("ref", i) for i in range(frames))]
    assert len(body_text) > len(body_codec)
    assert stream.text[8:] == body_text[: len(body_codec)] and stream.codec[8:] == body_codec
    assert stream.trailing == body_text[len(body_codec) :]
    flat = build_layout(model.config, role, text, has_speaker_vector=True, ref_ids=ref, num_ref_frames=frames)
    assert flat.text[8:] == body_text + [PAD] * len(body_codec)
    assert flat.codec[8:] == [C_PAD] * len(body_text) + body_codec
    long_ref = build_layout(model.config, role, text[:1], has_speaker_vector=True, ref_ids=ref, num_ref_frames=20,
                            non_streaming=False)  # fmt: skip
    assert long_ref.text[8 + len(ref) + 2 :] == [PAD] * (21 - len(ref) - 2) and long_ref.trailing == []


def test_embeddings_sum_both_tracks(cv):
    model, tok = cv
    talker = model.talker
    role, text = _ids(tok)
    vec = torch.randn(talker.config.hidden_size)
    layout = build_layout(model.config, role, text, language="english", speaker="vivian", has_speaker_vector=True)
    with torch.no_grad():
        embeds, trailing = embed_layout(talker, layout, speaker_vector=vec)
        p = talker.text_embed(torch.tensor([role[0], PAD, text[0]]))
        c = talker.codec_embed(torch.tensor([THINK, C_PAD]))
    torch.testing.assert_close(embeds[0], p[0])  # role: text only
    torch.testing.assert_close(embeds[3], p[1] + c[0])
    torch.testing.assert_close(embeds[7], p[1] + vec)  # speaker position: raw vector, not projected
    torch.testing.assert_close(embeds[9], p[2] + c[1])
    assert trailing.shape == (0, talker.config.hidden_size)


def test_batch_is_left_padded_with_zeros(cv):
    model, tok = cv
    short = build_layout(model.config, *_ids(tok, "Hi."), speaker="vivian", has_speaker_vector=True)
    long = build_layout(model.config, *_ids(tok, "Once upon a time the dragon"), speaker="vivian",
                        has_speaker_vector=True, non_streaming=False)  # fmt: skip
    vec = model.talker.codec_embed(torch.tensor(3065)).detach()
    with torch.no_grad():
        batch = embed_layouts(model.talker, model.config, [(short, {"speaker_vector": vec}),
                                                           (long, {"speaker_vector": vec})])  # fmt: skip
        alone, _ = embed_layout(model.talker, short, speaker_vector=vec)
    gap = batch.embeds.shape[1] - len(short)
    assert gap > 0 or len(long) < len(short)
    assert batch.mask[0].tolist() == [False] * gap + [True] * len(short)
    assert torch.count_nonzero(batch.embeds[0, :gap]) == 0
    torch.testing.assert_close(batch.embeds[0, gap:], alone)
    # trailing: row 0 (non-streaming) is all pad, row 1 has its text then pad
    torch.testing.assert_close(batch.trailing[0, -1], batch.pad_embed)
    assert batch.trailing.shape[1] == len(long.trailing)
