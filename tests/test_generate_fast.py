"""The fused fast path equals the eager module path (the reference) and leaves the weights untouched."""

from __future__ import annotations

import pytest
import torch

from qwen_tts import QwenTTS, SamplingParams, SynthesisRequest
from qwen_tts.fast import FastStepper, pack
from qwen_tts.generate import Stepper, generate_frames

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cv(tiny_custom_voice):
    return QwenTTS.from_pretrained(tiny_custom_voice, load_codec_encoder=False)


def _run(tts, reqs, cls, params, seed=0, frames=15):
    inputs = tts.talker_inputs(reqs)
    stepper = cls(tts.model, inputs, inputs.mask.shape[1] + frames + 1)
    gen = torch.Generator().manual_seed(seed)
    return torch.stack([f.codes for f in generate_frames(tts.model, inputs, params, frames, gen, stepper=stepper)])


@pytest.mark.parametrize("params", [SamplingParams.greedy(), SamplingParams()], ids=["greedy", "sampled"])
def test_fast_equals_eager(cv, params):
    reqs = [
        SynthesisRequest("Once upon a time, the dragon said hello.", speaker="vivian", language="english"),
        SynthesisRequest("Hi.", speaker="eric", non_streaming_mode=False),
    ]
    for batch in (reqs[:1], reqs):
        assert torch.equal(_run(cv, batch, FastStepper, params), _run(cv, batch, Stepper, params))


def test_packing_keeps_the_state_dict_and_follows_in_place_edits(cv):
    before = {k: v.clone() for k, v in cv.model.state_dict().items()}
    packed = pack(cv.model)
    after = cv.model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert pack(cv.model) is packed  # cached while nothing changed
    with torch.no_grad():
        cv.model.talker.model.layers[0].self_attn.q_norm.weight.mul_(1.0)
    assert pack(cv.model) is not packed  # an in-place edit invalidates the fused copy of the norms


def test_eager_switch_picks_the_reference(cv):
    from qwen_tts.generate import make_stepper

    inputs = cv.talker_inputs([SynthesisRequest("Hi.", speaker="vivian")])
    assert type(make_stepper(cv.model, inputs, 64)) is FastStepper
    assert type(make_stepper(cv.model, inputs, 64, eager=True)) is Stepper


def test_eager_env_reaches_generation(tiny_custom_voice, monkeypatch):
    monkeypatch.setenv("QWEN_TTS_EAGER", "1")
    tts = QwenTTS.from_pretrained(tiny_custom_voice, load_codec_encoder=False)
    assert tts.options.eager and not tts.speed_path_active
    seen = []
    real = Stepper.predict

    def spy(self, *args):
        seen.append(type(self))
        return real(self, *args)

    monkeypatch.setattr(Stepper, "predict", spy)
    list(tts.generate_codes(SynthesisRequest("Hi.", speaker="vivian", max_frames=2)))
    assert seen and set(seen) == {Stepper}


def test_a_packed_model_still_saves_and_reloads(cv, tmp_path):
    from qwen_tts.loading import load_model, save_model

    pack(cv.model)
    save_model(cv.model, tmp_path / "out")
    again = load_model(tmp_path / "out").state_dict()
    assert all(torch.equal(v, again[k]) for k, v in cv.model.state_dict().items())


@pytest.mark.gpu
def test_flash_attention_prefill_matches_sdpa(tiny_custom_voice, monkeypatch):
    from qwen_tts import layers
    from qwen_tts.generate import prefill_logits

    if layers.flash_attn_func() is None:
        pytest.skip("flash-attn is not installed")
    tts = QwenTTS.from_pretrained(tiny_custom_voice, device="cuda", dtype=torch.bfloat16, load_codec_encoder=False)
    inputs = tts.talker_inputs([SynthesisRequest("Once upon a time.", speaker="vivian")])
    flash, _ = prefill_logits(tts.model, inputs)
    monkeypatch.setattr(layers, "_use_flash", lambda *a: False)
    sdpa, _ = prefill_logits(tts.model, inputs)
    torch.testing.assert_close(flash.float(), sdpa.float(), atol=0.05, rtol=0.05)


def test_fast_equals_eager_in_bfloat16(tiny_custom_voice):
    """Half precision keeps the modules' rounding order (normalise, round, then scale by the weight)."""
    tts = QwenTTS.from_pretrained(tiny_custom_voice, dtype=torch.bfloat16, load_codec_encoder=False)
    reqs = [SynthesisRequest("Once upon a time, the dragon said hello.", speaker="vivian")]
    greedy = SamplingParams.greedy()
    assert torch.equal(_run(tts, reqs, FastStepper, greedy, frames=20), _run(tts, reqs, Stepper, greedy, frames=20))


def test_cpu_thread_cap_applies_to_steps_only(cv, monkeypatch):
    seen = []

    class Spy(FastStepper):
        def predict(self, *args):
            seen.append(torch.get_num_threads())
            return super().predict(*args)

    inputs = cv.talker_inputs([SynthesisRequest("Hi there.", speaker="vivian")])
    greedy = SamplingParams.greedy()
    torch.set_num_threads(2)
    try:
        frames = []
        for frame in generate_frames(cv.model, inputs, greedy, 4, stepper=Spy(cv.model, inputs, 64), cpu_threads=1):
            frames.append(frame.codes)
            assert torch.get_num_threads() == 2  # the consumer keeps its own setting
    finally:
        torch.set_num_threads(1)
    assert seen == [1] * 4
