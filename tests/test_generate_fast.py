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


def test_eager_env_switch(cv, monkeypatch):
    from qwen_tts.generate import make_stepper

    inputs = cv.talker_inputs([SynthesisRequest("Hi.", speaker="vivian")])
    assert type(make_stepper(cv.model, inputs, 64)) is FastStepper
    monkeypatch.setenv("QWEN_TTS_EAGER", "1")
    assert type(make_stepper(cv.model, inputs, 64)) is Stepper


def test_a_packed_model_still_saves_and_reloads(cv, tmp_path):
    from qwen_tts.loading import load_model, save_model

    pack(cv.model)
    save_model(cv.model, tmp_path / "out")
    again = load_model(tmp_path / "out").state_dict()
    assert all(torch.equal(v, again[k]) for k, v in cv.model.state_dict().items())


def _static(params):
    from qwen_tts.graphs import StaticStepper

    return lambda model, inputs, cache_len: StaticStepper(model, inputs, cache_len, params)


def test_static_shape_stepper_equals_eager(cv):
    """The CUDA-graph-ready step (tensor slots, full-cache masked attention, uniforms drawn up front) on CPU."""
    greedy = SamplingParams.greedy()
    reqs = [
        SynthesisRequest("Once upon a time, the dragon said hello.", speaker="vivian", language="english"),
        SynthesisRequest("Hi.", speaker="eric", non_streaming_mode=False),
    ]
    for batch in (reqs[:1], reqs):
        assert torch.equal(_run(cv, batch, _static(greedy), greedy), _run(cv, batch, Stepper, greedy))
    sampled = SamplingParams()  # one row: the uniforms come off the generator in the same order as eager draws
    assert torch.equal(_run(cv, reqs[:1], _static(sampled), sampled), _run(cv, reqs[:1], Stepper, sampled))


@pytest.mark.gpu
def test_cuda_graphs_equal_the_fused_path_on_gpu(tiny_custom_voice):
    tts = QwenTTS.from_pretrained(tiny_custom_voice, device="cuda", load_codec_encoder=False, cuda_graphs=True)
    plain = QwenTTS.from_pretrained(tiny_custom_voice, device="cuda", load_codec_encoder=False)
    greedy = SamplingParams.greedy()
    reqs = [
        SynthesisRequest("Once upon a time, the dragon said hello.", speaker="vivian", sampling=greedy, max_frames=20),
        SynthesisRequest("Hi.", speaker="eric", sampling=greedy, max_frames=20),
    ]
    for batch in (reqs[:1], reqs, reqs[:1]):  # the third run replays the pooled graphs
        a = torch.stack(list(tts.generate_codes(batch)))
        b = torch.stack(list(plain.generate_codes(batch)))
        assert torch.equal(a.cpu(), b.cpu())
    sampled = SynthesisRequest("Hello world.", speaker="ryan", max_frames=20)
    one = torch.stack(list(tts.generate_codes(sampled, torch.Generator("cuda").manual_seed(3))))
    two = torch.stack(list(tts.generate_codes(sampled, torch.Generator("cuda").manual_seed(3))))
    assert torch.equal(one, two)


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
        monkeypatch.setenv("QWEN_TTS_CPU_THREADS", "1")
        again = [f.codes for f in generate_frames(cv.model, inputs, greedy, 4, stepper=Spy(cv.model, inputs, 64))]
    finally:
        torch.set_num_threads(1)
    assert seen == [1] * 8
    assert torch.equal(torch.stack(frames), torch.stack(again))
    monkeypatch.setenv("QWEN_TTS_CPU_THREADS", "many")
    with pytest.raises(ValueError, match="QWEN_TTS_CPU_THREADS"):
        next(generate_frames(cv.model, inputs, greedy, 4))


class _RerunGraph:
    """Stands in for a captured CUDA graph on a machine without a GPU: replay re-runs the captured function and
    writes into the tensors the capture returned, which is what a real replay does to its static outputs."""

    def __init__(self, fn, out):
        self.fn, self.out = fn, out

    def replay(self):
        new = self.fn()
        for old, fresh in zip(*((self.out, new) if isinstance(new, tuple) else ((self.out,), (new,))), strict=True):
            old.copy_(fresh)


def test_graph_stepper_plumbing_and_pool_without_a_gpu(cv, monkeypatch):
    from qwen_tts import graphs

    def capture(self, fn):
        out = fn()
        return _RerunGraph(fn, out), out

    monkeypatch.setattr(graphs.CudaGraphStepper, "_capture", capture)
    monkeypatch.setattr(torch.cuda, "graph_pool_handle", lambda: None)
    monkeypatch.setattr(cv.model, "_graph_pool", {}, raising=False)
    greedy = SamplingParams.greedy()
    reqs = [
        SynthesisRequest("Once upon a time, the dragon said hello.", speaker="vivian", language="english"),
        SynthesisRequest("Hi.", speaker="eric", non_streaming_mode=False),
    ]
    for batch in (reqs[:1], reqs, reqs[:1]):
        inputs = cv.talker_inputs(batch)
        stepper = graphs.graph_stepper(cv.model, inputs, inputs.mask.shape[1] + 16, greedy)
        assert stepper.cache_len == graphs.MIN_BUCKET
        got = _run(cv, batch, lambda *_a, s=stepper: s, greedy)
        assert not stepper.busy  # released when generation ended
        assert torch.equal(got, _run(cv, batch, Stepper, greedy))
    assert sorted(len(v) for v in cv.model._graph_pool.values()) == [1, 1]  # one per batch size, reused
