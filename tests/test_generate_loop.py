"""The frame generator and the QwenTTS facade on tiny checkpoints: determinism, seeds, limits, EOS, cache, batches."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from qwen_tts import QwenTTS, SamplingParams, SynthesisRequest
from qwen_tts.generate import generate_frames, prefill_logits, reference_greedy_codes

pytestmark = pytest.mark.usefixtures("one_torch_thread")


GREEDY = SamplingParams.greedy()


@pytest.fixture(scope="module")
def cv(tiny_custom_voice):
    return QwenTTS.from_pretrained(tiny_custom_voice)


@pytest.fixture(scope="module")
def vd(tiny_voice_design):
    return QwenTTS.from_pretrained(tiny_voice_design)


@pytest.fixture(scope="module")
def base(tiny_base):
    return QwenTTS.from_pretrained(tiny_base)


def _codes(tts, req, generator=None):
    return torch.stack(list(tts.generate_codes(req, generator)))


def req(text="Once upon a time, the dragon said hello.", **kw):
    kw.setdefault("speaker", "vivian")
    kw.setdefault("sampling", GREEDY)
    kw.setdefault("max_frames", 12)
    return SynthesisRequest(text, **kw)


def test_greedy_is_deterministic_and_codes_are_in_range(cv):
    a, b = _codes(cv, req()), _codes(cv, req())
    assert a.shape == (12, 16) and torch.equal(a, b)
    assert int(a.min()) >= 0 and int(a.max()) < 2048


def test_same_seed_reproduces_and_other_seeds_differ(cv):
    sampled = req(sampling=SamplingParams())
    a = _codes(cv, sampled, torch.Generator().manual_seed(1))
    b = _codes(cv, sampled, torch.Generator().manual_seed(1))
    c = _codes(cv, sampled, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_max_frames_is_respected(cv):
    assert len(_codes(cv, req(max_frames=1))) == 1
    assert len(_codes(cv, req(max_frames=7))) == 7


def test_frames_are_yielded_while_generating(cv):
    it = cv.generate_codes(req(max_frames=50))
    first = next(it)
    assert first.shape == (16,)
    it.close()


def _force_eos(tts, bias: float):
    """Make EOS the argmax whenever it is allowed (a huge EOS logit); returns a restore function."""
    head = tts.model.talker.codec_head.weight
    eos = tts.config.talker_config.codec_eos_token_id
    saved = head[eos].clone()
    with torch.no_grad():
        head[eos] = tts.model.talker.model.norm.weight.sign() * bias
    return lambda: head.data[eos].copy_(saved)


def test_eos_stops_after_the_two_banned_steps(cv):
    restore = _force_eos(cv, 1e3)
    try:
        codes = _codes(cv, req(max_frames=30))
    finally:
        restore()
    assert len(codes) == 2


def test_static_cache_equals_full_recompute(cv, base):
    for tts, request in ((cv, req(max_frames=10)), (cv, req(max_frames=10, non_streaming_mode=False))):
        inputs = tts.talker_inputs([request])
        cached = torch.stack([f.codes[0] for f in generate_frames(tts.model, inputs, GREEDY, 10)])
        assert torch.equal(cached, reference_greedy_codes(tts.model, inputs, 10))


def test_batch_equals_each_request_alone(cv):
    long_req = req("Once upon a time, the dragon said hello to the castle.", max_frames=9)
    short_req = req("Hi.", speaker="eric", language="chinese", max_frames=4, non_streaming_mode=False)
    batch = _codes(cv, [long_req, short_req])
    alone_long, alone_short = _codes(cv, long_req), _codes(cv, short_req)
    assert batch.shape == (9, 2, 16)
    assert torch.equal(batch[:, 0], alone_long)
    assert torch.equal(batch[:4, 1], alone_short)
    assert (batch[4:, 1] == -1).all()


def test_speaker_vector_override_equals_the_preset_row(cv):
    by_name = _codes(cv, req(speaker="ryan"))
    by_vector = _codes(cv, req(speaker=None, speaker_vector=cv.speaker_row("ryan")))
    other = _codes(cv, req(speaker=None, speaker_vector=cv.speaker_row("serena")))
    assert torch.equal(by_name, by_vector) and not torch.equal(by_name, other)


def test_instruct_changes_voice_design_output(vd):
    a = _codes(vd, req(speaker=None, instruct="speak calm"))
    b = _codes(vd, req(speaker=None, instruct="angry whisper"))
    assert not torch.equal(a, b)


def test_base_clone_with_x_vector_and_icl(base):
    ref = np.random.default_rng(0).standard_normal(24000).astype(np.float32) * 0.1
    vec = base.speaker_embedding(ref, 24000)
    assert vec.shape == (base.hidden_size,)
    xvec_only = _codes(base, req(speaker=None, speaker_vector=vec))
    icl = _codes(base, req(speaker=None, speaker_vector=vec, ref_codes=base.codec.encode(ref, 24000), ref_text="Hi."))
    assert xvec_only.shape == icl.shape == (12, 16) and not torch.equal(xvec_only, icl)


def test_stream_yields_frame_sized_chunks_equal_to_synthesize(cv):
    request = req(max_frames=6)
    chunks = list(cv.stream(request))
    assert [len(c) for c in chunks] == [1920] * 6 and chunks[0].dtype == np.float32
    np.testing.assert_allclose(np.concatenate(chunks), cv.synthesize(request), atol=1e-4)
    whole = cv.codec.decode(_codes(cv, request)).numpy()
    np.testing.assert_allclose(cv.synthesize(request), whole, atol=1e-4)


def test_prefill_logits_shape(cv):
    logits, hidden = prefill_logits(cv.model, cv.talker_inputs([req()]))
    assert logits.shape == (1, 3072) and hidden.shape == (1, cv.hidden_size)


def test_facts(cv, base):
    assert cv.model_type == "custom_voice" and "vivian" in cv.speakers and cv.supports_instruct
    assert base.model_type == "base" and base.speakers == [] and not base.supports_instruct
    assert cv.languages[0] == "auto" and "english" in cv.languages and "sichuan_dialect" not in cv.languages
    assert (cv.sample_rate, cv.samples_per_frame) == (24000, 1920)


# -- bad input -----------------------------------------------------------------------------------------------------
def test_unknown_speaker_names_the_allowed_ones(cv):
    with pytest.raises(ValueError, match=r"unknown speaker 'bob'.*vivian"):
        _codes(cv, req(speaker="bob"))


def test_unknown_language_names_the_allowed_ones(cv):
    with pytest.raises(ValueError, match=r"unknown language 'klingon'.*english"):
        _codes(cv, req(language="klingon"))


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_text_is_refused(cv, text):
    with pytest.raises(ValueError, match="text is empty"):
        _codes(cv, req(text))


def test_instruct_on_base_is_ignored_with_a_warning(base, caplog):
    vec = torch.zeros(base.hidden_size)
    with caplog.at_level(logging.WARNING, logger="qwen_tts.api"):
        with_instruct = _codes(base, req(speaker=None, speaker_vector=vec, instruct="be happy", max_frames=3))
    assert "instruct" in caplog.text and "ignored" in caplog.text
    assert torch.equal(with_instruct, _codes(base, req(speaker=None, speaker_vector=vec, max_frames=3)))


def test_prompt_longer_than_the_cache_is_refused(tiny_custom_voice):
    small = QwenTTS.from_pretrained(tiny_custom_voice, max_cache_len=16, load_codec_encoder=False)
    with pytest.raises(ValueError, match="does not fit the cache of 16 slots"):
        _codes(small, req("Once upon a time the dragon said hello to the castle and the night"))


def test_missing_speaker_and_bad_vector_and_reference_misuse(cv, base):
    with pytest.raises(ValueError, match="need a speaker"):
        _codes(cv, req(speaker=None))
    with pytest.raises(ValueError, match="speaker_vector must have shape"):
        _codes(cv, req(speaker=None, speaker_vector=torch.zeros(5)))
    with pytest.raises(ValueError, match="base checkpoint"):
        _codes(cv, req(ref_codes=torch.zeros(3, 16, dtype=torch.long), ref_text="x"))
    with pytest.raises(ValueError, match="ref_text"):
        _codes(
            base,
            req(
                speaker=None,
                speaker_vector=torch.zeros(base.hidden_size),
                ref_codes=torch.zeros(3, 16, dtype=torch.long),
            ),
        )
    with pytest.raises(ValueError, match="speaker_embedding needs a base"):
        cv.speaker_embedding(np.zeros(24000, dtype=np.float32), 24000)
