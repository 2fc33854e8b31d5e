"""Continuous batching: a request's codes do not depend on who shares the batch; rows join and leave at frames."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from qwen_tts import QwenTTS, SamplingParams, SynthesisRequest
from qwen_tts.batching import BatchEngine, rows_for_memory
from qwen_tts.runner import prefill_groups

pytestmark = pytest.mark.usefixtures("one_torch_thread")
GREEDY = SamplingParams.greedy()
TEXT = "Once upon a time, the dragon said hello to the castle."


@pytest.fixture(scope="module")
def tts(tiny_factory):
    return QwenTTS.from_pretrained(tiny_factory("custom_voice", eos="never"), load_codec_encoder=False)


@pytest.fixture(scope="module")
def engine(tts):
    with BatchEngine(tts, max_rows=4, cache_len=256) as eng:
        yield eng


def _req(frames: int, sampling=GREEDY, speaker="vivian", text=TEXT, **kw) -> SynthesisRequest:
    return SynthesisRequest(text, speaker=speaker, sampling=sampling, max_frames=frames, **kw)


def _codes(stream) -> torch.Tensor:
    return torch.stack(list(stream))


def _wait(predicate, timeout=60.0):
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.002)


def _join_and_leave(engine, main: SynthesisRequest, seed, others: list[tuple[SynthesisRequest, int]]):
    """``main`` runs while each of ``others`` joins after main's frames reach a mark and (shorter) leaves early."""
    stream = engine.submit(main, seed=seed, audio=False)
    frames, side = [], []
    marks = iter([(3, 0), (8, 1), (14, 2)][: len(others)])
    mark = next(marks, None)
    for frame in stream:
        frames.append(frame)
        if mark is not None and len(frames) == mark[0]:
            req, s = others[mark[1]]
            side.append(engine.submit(req, seed=s, audio=False))
            mark = next(marks, None)
    return torch.stack(frames), [_codes(s) for s in side], stream, side


@pytest.mark.parametrize("sampled", [False, True], ids=["greedy", "seeded"])
def test_codes_alone_equal_codes_in_a_changing_batch(engine, tts, sampled):
    sampling = SamplingParams() if sampled else GREEDY
    main = _req(48, sampling)
    others = [
        (_req(6, SamplingParams(temperature=0.7, top_k=20), speaker="eric", text="Hi."), 11),
        (_req(9, GREEDY, speaker="ryan", language="english", text="A different sentence, longer."), 12),
        (_req(5, SamplingParams(top_p=0.8, repetition_penalty=1.3), speaker="serena"), 13),
    ]
    alone = _codes(engine.submit(main, seed=5, audio=False))
    together, side, stream, side_streams = _join_and_leave(engine, main, 5, others)
    assert torch.equal(alone, together)
    assert stream.reason == "cap" and len(alone) == 48
    for other in side_streams:  # each joined after main started and left before main ended: they shared steps
        assert stream.joined_step < other.joined_step < other.left_step < stream.left_step
    for (req, seed), got in zip(others, side, strict=True):
        assert torch.equal(got, _codes(engine.submit(req, seed=seed, audio=False)))  # and theirs do not depend on main
    if sampled:
        other_seed = _codes(engine.submit(main, seed=6, audio=False))
        assert not torch.equal(other_seed, alone)
    else:  # greedy through the engine is the library's single-request generator
        assert torch.equal(alone, torch.stack(list(tts.generate_codes(main))))


def _submit_together(engine, items: list[tuple[SynthesisRequest, int]]) -> list:
    """Submit while holding the scheduler's lock (re-entrant), so every request waits for the same boundary."""
    with engine._cond:
        return [engine.submit(req, seed=seed, audio=False) for req, seed in items]


def _mixed(tts, sampled: bool) -> list[tuple[SynthesisRequest, int]]:
    """Prompt lengths 13..56 positions, preset speakers, an x-vector-like identity, an instruction, mixed sampling."""
    identity = torch.randn(tts.hidden_size, generator=torch.Generator().manual_seed(3))
    sampling = SamplingParams() if sampled else GREEDY
    return [
        (_req(12, sampling, text="Hi."), 21),
        (_req(10, sampling, speaker="eric", text="A different sentence, quite a bit longer than the first."), 22),
        (_req(14, sampling, speaker=None, speaker_vector=identity, text="Who is speaking now?"), 23),
        (_req(9, SamplingParams(temperature=0.7, top_k=20) if sampled else GREEDY, speaker="ryan",
              instruct="Slow and calm."), 24),
    ]  # fmt: skip


@pytest.mark.parametrize("sampled", [False, True], ids=["greedy", "seeded"])
def test_requests_submitted_together_prefill_in_one_pass_and_equal_their_codes_alone(engine, tts, sampled):
    items = _mixed(tts, sampled)
    alone = [_codes(engine.submit(req, seed=seed, audio=False)) for req, seed in items]
    streams = _submit_together(engine, items)
    together = [_codes(s) for s in streams]
    assert {s.joined_step for s in streams} == {streams[0].joined_step}
    assert [s.prefilled_with for s in streams] == [len(items)] * len(items)  # one pass for all four
    for (req, _), got, want in zip(items, together, alone, strict=True):
        assert len(got) == req.max_frames and torch.equal(got, want)
    if not sampled:
        assert torch.equal(alone[0], torch.stack(list(tts.generate_codes(items[0][0]))))


def test_requests_joining_a_running_batch_together_change_nothing(engine, tts):
    """Three prompts prefilled in one pass beside a running row: every row's codes are its codes alone."""
    main, others = _req(30, SamplingParams()), _mixed(tts, sampled=True)[1:]
    alone_main = _codes(engine.submit(main, seed=5, audio=False))
    alone = [_codes(engine.submit(req, seed=seed, audio=False)) for req, seed in others]
    stream = engine.submit(main, seed=5, audio=False)
    frames = [next(stream) for _ in range(4)]
    joined = _submit_together(engine, others)
    together = [_codes(s) for s in joined]
    frames += list(stream)
    assert torch.equal(torch.stack(frames), alone_main)
    assert all(s.prefilled_with == 3 and stream.joined_step < s.joined_step for s in joined)
    assert all(torch.equal(got, want) for got, want in zip(together, alone, strict=True))


def test_a_long_prompt_is_not_prefilled_beside_short_ones():
    assert prefill_groups([20, 22, 25]) == [[0, 1, 2]]
    assert prefill_groups([20, 500, 22, 21]) == [[0, 3, 2], [1]]  # 4 x 500 padded for 563 real: split off
    assert prefill_groups([7]) == [[0]]


def test_rows_really_overlapped(engine):
    """The join/leave test above is only meaningful if the rows shared steps: check the engine's own record."""
    before = engine.steps
    a = engine.submit(_req(30), audio=False)
    _wait(lambda: a.frames >= 2)
    b = engine.submit(_req(4, speaker="eric"), audio=False)
    assert len(_codes(b)) == 4 and b.reason == "cap"
    assert len(_codes(a)) == 30
    assert engine.steps - before < 30 + 4, "the two requests must have shared decode steps"


def test_cancel_takes_effect_within_200_ms(engine):
    """Iteration ends at once; the row leaves at the next frame boundary: within 200 ms whenever a step is shorter
    than that (tens of ms for the tiny model; a shared box under heavy load can stretch one step past 200 ms)."""
    stream = engine.submit(_req(200), audio=False)
    _wait(lambda: stream.frames >= 3)
    started = time.monotonic()
    stream.cancel()
    assert list(stream) == [] and time.monotonic() - started < 0.2  # the consumer sees the end at once
    assert stream.left.wait(max(0.2, 2 * engine.last_step_s) + 0.05), "the row did not leave at the next boundary"
    assert stream.reason == "cancelled" and stream.left_step is not None
    _wait(lambda: engine.load() == (0, 0), timeout=5)


def test_a_stop_callable_cancels_while_iterating(engine):
    asked = threading.Event()
    stream = engine.submit(_req(200), audio=False, stop=asked.is_set)
    frames = []
    for frame in stream:
        frames.append(frame)
        if len(frames) == 3:
            asked.set()
    assert len(frames) == 3 and stream.cancelled
    assert stream.left.wait(0.5) and stream.reason == "cancelled"


def test_a_row_at_its_frame_cap_leaves(engine):
    long = engine.submit(_req(25), audio=False)
    short = engine.submit(_req(7, speaker="eric"), audio=False)
    assert len(_codes(short)) == 7 and short.reason == "cap" and short.left.is_set()
    assert engine.load()[0] <= 1  # the short row is gone while the long one may still run
    assert len(_codes(long)) == 25


def test_audio_chunks_grow_and_equal_the_whole_decode(engine, tts):
    req = _req(40)
    chunks = list(engine.submit(req))
    spf = tts.samples_per_frame
    assert [len(c) // spf for c in chunks] == [2, 4, 8, 16, 10]
    codes = torch.stack(list(tts.generate_codes(req)))
    whole = tts.codec.decode(codes).numpy()
    np.testing.assert_allclose(np.concatenate(chunks), whole, atol=1e-5, rtol=0)


def test_many_threads_submit_and_read_at_once(engine):
    reqs = [_req(8 + 3 * i, speaker=s) for i, s in enumerate(["vivian", "eric", "ryan", "serena", "aiden", "dylan"])]
    alone = [_codes(engine.submit(r, audio=False)) for r in reqs]
    got: dict[int, torch.Tensor] = {}

    def run(i):
        got[i] = _codes(engine.submit(reqs[i], audio=False))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(reqs))]  # 6 requests, 4 rows: 2 wait
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(torch.equal(got[i], alone[i]) for i in range(len(reqs)))


def test_bad_requests_are_refused_at_submit(engine, tts):
    with pytest.raises(ValueError, match="speaker"):
        engine.submit(_req(5, speaker="nobody"))
    with pytest.raises(ValueError, match="max_frames"):
        engine.submit(_req(0))
    with pytest.raises(ValueError, match="does not fit"):
        engine.submit(_req(5, text="word " * 300))
    assert engine.load() == (0, 0)


def test_close_ends_open_streams_and_refuses_new_ones(tts):
    eng = BatchEngine(tts, max_rows=1, cache_len=256)
    running = eng.submit(_req(200), audio=False)
    waiting = eng.submit(_req(200), audio=False)
    _wait(lambda: running.frames >= 1)
    eng.close()
    list(running), list(waiting)
    assert running.reason == "closed" and waiting.reason == "closed"
    with pytest.raises(RuntimeError, match="closed"):
        eng.submit(_req(5))


def test_rows_for_memory_follows_the_kv_size(tts):
    tc = tts.config.talker_config
    per_row = 2 * tc.num_hidden_layers * tc.num_key_value_heads * tc.attn_head_dim * 1024 * 4
    assert rows_for_memory(tts, 1024, 5 * per_row) == 5
    assert rows_for_memory(tts, 1024, 0) == 1 and rows_for_memory(tts, 1024, 10**15) == 32
