"""Rendering on tiny checkpoints (CPU): streaming, masters, seeds, the drift guard, cancellation, voice locks."""

from __future__ import annotations

import asyncio
import json
import threading

import numpy as np
import pytest
import soundfile as sf

from bot.engine.local import LocalEngine
from bot.engine.options import EngineOptions
from bot.narration import (
    AudioChunk,
    DriftGuard,
    Finished,
    Identity,
    Narrator,
    Progress,
    parse_script,
)
from bot.narration.production import SEED_STRIDE

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(300)]

FRAMES = 8  # per speech segment: 0.64 s of audio, enough to stream several chunks
SCRIPT = "[Calm] Hello there. [Pause 0.3s] [Excited] It is here! [@ryan] [Whispering] Who?"


@pytest.fixture(scope="module")
def engine(tiny_custom_voice, tiny_base, tiny_voice_design):
    return LocalEngine(
        EngineOptions(
            str(tiny_custom_voice), base_model=str(tiny_base), design_model=str(tiny_voice_design), device="cpu",
            dtype="float32", first_chunk_frames=1, chunk_frames=2,
        )
    )  # fmt: skip


@pytest.fixture
def make_narrator(engine, tmp_path):
    made = []

    def make(**kwargs):
        kwargs.setdefault("guard", DriftGuard(enabled=False))
        narrator = Narrator(engine, outputs_dir=tmp_path / "outputs", eta_path=tmp_path / "eta.json", **kwargs)
        made.append(narrator)
        return narrator

    yield make
    for narrator in made:
        narrator.close()


def voices_for(engine, seed: int = 0) -> dict:
    model = engine.custom_voice_model
    return {None: Identity("vivian", "preset", model, speaker="vivian", seed=seed),
            "ryan": Identity("ryan", "preset", model, speaker="ryan", seed=seed)}  # fmt: skip


async def collect(narrator, script, voices, **kwargs) -> list:
    return [event async for event in narrator.render(script, voices, max_frames=FRAMES, **kwargs)]


def audio_of(events) -> np.ndarray:
    return np.concatenate([e.audio for e in events if isinstance(e, AudioChunk)])


async def test_stream_equals_master_and_audio_comes_before_the_end(engine, make_narrator):
    narrator = make_narrator()
    script = parse_script(SCRIPT)
    events = await collect(narrator, script, voices_for(engine), job_id=7)
    kinds = [type(e).__name__ for e in events]
    finished = events[-1]
    assert isinstance(finished, Finished) and kinds.count("Finished") == 1
    # Order of events, not time: audio of segment 1 streams out before segment 2 starts, in several chunks.
    second = next(i for i, e in enumerate(events) if isinstance(e, Progress) and e.segment == 2)
    assert kinds.index("AudioChunk") < second and kinds[:second].count("AudioChunk") >= 2
    assert kinds[0] == "Progress" and events[0].segment == 1 and events[0].total == 3  # speech only, not the pause
    streamed = audio_of(events)
    master, sr = sf.read(str(finished.master_path), dtype="float32")
    assert sr == 24000 and len(master) == len(streamed)
    assert np.max(np.abs(master - streamed)) <= 1.0 / 32767 + 1e-7
    assert finished.audio_seconds == pytest.approx(len(streamed) / 24000)
    sidecar = json.loads(finished.sidecar_path.read_text())
    segments = sidecar["segments"]
    assert [s["kind"] for s in segments] == ["speech", "pause", "speech", "speech"]
    # Expected duration: speech pieces + pause, minus one 10 ms crossfade per speech-to-speech join.
    expected = sum(s["seconds"] for s in segments) - 240 / 24000
    assert finished.audio_seconds == pytest.approx(expected, abs=1e-6)
    assert all(s["seconds"] == pytest.approx(FRAMES * 0.08) for s in segments if s["kind"] == "speech")
    assert sidecar["script"] == SCRIPT and sidecar["job_id"] == "7" and len(sidecar["identities"]) == 2
    assert segments[3]["instruct"] == "Whisper softly and breathily, very quietly, as if sharing a secret."
    assert "job7" in finished.master_path.name and finished.sidecar_path.exists()


async def test_pause_is_exact_silence(engine, make_narrator):
    narrator = make_narrator()
    events = await collect(narrator, parse_script("Hi. [Pause 0.5s] Yo."), voices_for(engine))
    audio = audio_of(events)
    speech = FRAMES * 1920
    assert np.all(audio[speech : speech + 12000] == 0.0) and np.any(audio[:speech] != 0.0)


async def test_same_seed_same_audio_other_seed_other_audio(engine, make_narrator):
    narrator = make_narrator()
    script = parse_script("[Sad] One two three.")
    a = audio_of(await collect(narrator, script, voices_for(engine, seed=5)))
    b = audio_of(await collect(narrator, script, voices_for(engine, seed=5)))
    c = audio_of(await collect(narrator, script, voices_for(engine, seed=6)))
    assert np.array_equal(a, b)
    assert len(a) == len(c) and not np.array_equal(a, c)


async def test_drift_guard_resamples_when_forced_and_keeps_only_the_last_attempt(engine, make_narrator):
    script = parse_script("[Angry] Stop right there.")
    forced = make_narrator(guard=DriftGuard(threshold=1.01, max_retries=2, probe_seconds=0.5))
    noise = np.random.default_rng(0).normal(0, 0.1, 24000).astype(np.float32)
    reference = await forced.xvector(noise, 24000)  # presets carry no x-vector; give this one a reference
    guarded = {None: Identity("vivian", "preset", engine.custom_voice_model, speaker="vivian", seed=3,
                              reference_vector=reference)}  # fmt: skip
    events = await collect(forced, script, guarded)
    segment = json.loads(events[-1].sidecar_path.read_text())["segments"][0]
    assert segment["attempts"] == 3 and len(segment["probe_scores"]) == 3
    assert segment["seed"] == 3 + 2 * SEED_STRIDE
    assert events[-1].lock_scores[0] == pytest.approx(segment["lock_score"]) and segment["lock_score"] < 1.01
    # The rejected attempts were never streamed: the audio is exactly that of the last attempt's seed.
    plain = make_narrator()
    expected = audio_of(await collect(plain, script, voices_for(engine, seed=3 + 2 * SEED_STRIDE)))
    assert np.array_equal(audio_of(events), expected)
    relaxed = make_narrator(guard=DriftGuard(threshold=-1.0, probe_seconds=0.5))
    events = await collect(relaxed, script, guarded)
    assert json.loads(events[-1].sidecar_path.read_text())["segments"][0]["attempts"] == 1


async def test_cancel_stops_audio_and_keeps_no_master(engine, make_narrator, tmp_path):
    narrator = make_narrator()
    cancel = threading.Event()
    seen = []
    async for event in narrator.render(parse_script("One. [Pause] Two. Three."), voices_for(engine), cancel=cancel):
        seen.append(event)
        if isinstance(event, AudioChunk):
            cancel.set()  # /stop: nothing more may come out
    assert sum(isinstance(e, AudioChunk) for e in seen) == 1
    assert not any(isinstance(e, Finished) for e in seen)
    await asyncio.get_running_loop().run_in_executor(None, narrator.close)  # the compute thread stopped
    assert not list((tmp_path / "outputs").rglob("*.wav*"))


async def test_leaving_the_loop_early_also_stops(engine, make_narrator, tmp_path):
    narrator = make_narrator()
    async for event in narrator.render(parse_script("One. Two."), voices_for(engine), max_frames=40):
        if isinstance(event, AudioChunk):
            break
    await asyncio.get_running_loop().run_in_executor(None, narrator.close)
    assert not list((tmp_path / "outputs").rglob("*.wav*"))


async def test_bad_inputs_are_clear_errors(engine, make_narrator):
    narrator = make_narrator()
    with pytest.raises(ValueError, match=r"\[@bob\]"):
        await collect(narrator, parse_script("[@bob] hi"), voices_for(engine))
    wrong = {None: Identity("x", "cloned", engine.custom_voice_model, vector=[0.1] * 5)}
    with pytest.raises(ValueError, match="speaker_vector must have shape"):
        await collect(narrator, parse_script("hi"), wrong)
    with pytest.raises(ValueError, match="unknown speaker 'nobody'"):
        await narrator.preset_voice("nobody")
    assert (await narrator.preset_voice("Ryan")).kind == "preset"


async def test_finetuned_speaker_renders_from_its_own_checkpoint(engine, make_narrator, tiny_factory):
    other = str(tiny_factory("custom_voice", seed=1))  # stands in for a fine-tuned checkpoint
    narrator = make_narrator()
    identity = await narrator.preset_voice("serena", model=other)
    assert identity.kind == "finetuned" and identity.model == other
    script = parse_script("Hello there.")
    own = audio_of(await collect(narrator, script, {None: identity}))
    base = audio_of(await collect(narrator, script, {None: Identity("s", "preset", engine.custom_voice_model,
                                                                    speaker="serena", seed=identity.seed)}))  # fmt: skip
    assert other in engine.loaded() and not np.array_equal(own, base)


async def test_design_and_clone_lock_an_x_vector(engine, make_narrator):
    narrator = make_narrator()
    lock = await narrator.design_voice("a warm, low voice", "warm", seed=2, max_frames=12)
    assert lock.identity.kind == "designed" and lock.sample_rate == 24000 and len(lock.clip) == 12 * 1920
    assert lock.identity.model == engine.custom_voice_model and lock.identity.description == "a warm, low voice"
    assert np.allclose(lock.identity.vector, await narrator.xvector(lock.clip, 24000), atol=1e-6)
    again = await narrator.design_voice("a warm, low voice", "warm", seed=2, max_frames=12)
    assert np.array_equal(again.clip, lock.clip)  # the anchor is reproducible from its seed
    clone = await narrator.clone_voice(lock.clip, 24000, " the words ", "copy")
    assert clone.identity.kind == "cloned" and clone.identity.transcript == "the words"
    assert np.allclose(clone.identity.vector, lock.identity.vector, atol=1e-6)
    # The locked vector renders (emotion changes only the instruction) and the guard scores it.
    guarded = make_narrator(guard=DriftGuard(threshold=-1.0, probe_seconds=0.5))
    events = await collect(guarded, parse_script("[Happy] Hi there. [Sad] Bye now."), {None: lock.identity})
    assert all(s is not None and -1.0 <= s <= 1.0 for s in events[-1].lock_scores)


async def test_eta_is_learned_and_persisted(engine, make_narrator, tmp_path):
    narrator = make_narrator()
    await collect(narrator, parse_script("Hello there."), voices_for(engine))
    stored = json.loads((tmp_path / "eta.json").read_text())
    (entry,) = stored.values()
    assert entry["renders"] == 1 and entry["rate"] > 0
    script = parse_script("Hello there. [Pause] Again.")
    later = make_narrator()
    assert later.predict_seconds(script) == pytest.approx(entry["rate"] * (12 + 6) / 15.0)  # 18 characters of speech
    events = await collect(later, script, voices_for(engine))
    etas = [e.eta_s for e in events if isinstance(e, Progress)]
    assert all(eta is not None and eta >= 0 for eta in etas)


async def test_engine_loads_lazily_and_keeps_at_most_max_loaded(tiny_custom_voice, tiny_base):
    engine = LocalEngine(EngineOptions(str(tiny_custom_voice), base_model=str(tiny_base), device="cpu", max_loaded=1))
    assert engine.loaded() == []
    assert engine.speakers() and engine.loaded() == [str(tiny_custom_voice)]
    engine.xvector(np.zeros(24000, np.float32), 24000)
    assert engine.loaded() == [str(tiny_base)]
    with pytest.raises(ValueError, match="max_loaded"):
        EngineOptions("x", max_loaded=0)
