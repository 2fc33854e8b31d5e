"""Narration parts without a model: identities and lock scores, joins, masters and exports, the Smart ETA store."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.narration.eta import EtaStore, RenderEta
from bot.narration.identity import DriftGuard, Identity, lock_score
from bot.narration.joins import Joiner
from bot.narration.masters import MasterWriter, export_master, format_for_suffix, master_stem

# -- identities ----------------------------------------------------------------------------------------------------


def test_identity_round_trips_through_json_and_validates():
    identity = Identity(
        "Narrator", "designed", "ckpt", vector=np.arange(4, dtype=np.float32), seed=7, language="english"
    )
    again = Identity.from_dict(json.loads(json.dumps(identity.to_dict())))
    assert again == identity and again.vector == (0.0, 1.0, 2.0, 3.0) and again.guard_vector == again.vector
    with pytest.raises(ValueError, match="kind must be one of"):
        Identity("x", "borrowed", "ckpt", speaker="a")
    with pytest.raises(ValueError, match="needs a timbre"):
        Identity("x", "preset", "ckpt")
    with pytest.raises(ValueError, match="finite"):
        Identity("x", "cloned", "ckpt", vector=[1.0, float("nan")])
    with pytest.raises(ValueError, match="unknown identity fields"):
        Identity.from_dict({**identity.to_dict(), "colour": "blue"})


def test_lock_score_is_cosine():
    a = np.array([1.0, 0.0, 1.0])
    assert lock_score(a, a * 3) == pytest.approx(1.0)
    assert lock_score(a, -a) == pytest.approx(-1.0)
    assert lock_score(a, [0.0, 1.0, 0.0]) == pytest.approx(0.0)
    assert lock_score(a, np.zeros(3)) == 0.0
    with pytest.raises(ValueError, match="differ in size"):
        lock_score(a, [1.0])


def test_drift_guard_rejects_bad_settings():
    with pytest.raises(ValueError, match="threshold"):
        DriftGuard(threshold=2.0)
    with pytest.raises(ValueError, match="max_retries"):
        DriftGuard(max_retries=-1)


# -- joins ---------------------------------------------------------------------------------------------------------


def run_joiner(pieces: list[list[np.ndarray]], pauses: list[int], fade: int) -> np.ndarray:
    joiner, out = Joiner(fade), []
    for k, chunks in enumerate(pieces):
        if k and pauses[k - 1]:
            out.append(joiner.pause(pauses[k - 1]))
        joiner.begin_piece()
        out += [joiner.push(c) for c in chunks]
        out.append(joiner.end_piece())
    out.append(joiner.finish())
    return np.concatenate(out)


def test_crossfade_removes_the_click_between_two_pieces():
    fade = 240
    a = [np.full(1000, 0.9, np.float32)]
    b = [np.full(700, -0.9, np.float32), np.full(500, -0.9, np.float32)]
    out = run_joiner([a, b], [0], fade)
    assert len(out) == 1000 + 1200 - fade  # one overlap per join
    assert np.max(np.abs(np.diff(out))) < 1.8 / fade * 3  # a butt join would jump by 1.8
    assert abs(out[0]) < 0.01 and abs(out[-1]) < 0.01  # faded in and out at the ends


def test_pause_is_silence_between_fades():
    a = [np.full(1000, 0.5, np.float32)]
    out = run_joiner([a, a], [2400], 240)
    assert len(out) == 1000 + 2400 + 1000  # no overlap across a pause
    assert np.all(out[1000:3400] == 0.0)
    assert np.max(np.abs(np.diff(out))) < 0.5 / 240 * 3


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.lists(st.integers(0, 700), min_size=0, max_size=4), min_size=1, max_size=4),
    st.lists(st.integers(0, 500), min_size=4, max_size=4),
    st.integers(1, 300),
)
def test_joiner_length_and_bounds(sizes, pauses, fade):
    rng = np.random.default_rng(0)
    pieces = [[rng.uniform(-1, 1, n).astype(np.float32) for n in piece] for piece in sizes]
    out = run_joiner(pieces, pauses, fade)
    lengths = [sum(len(c) for c in piece) for piece in pieces]
    expected, tail = 0, 0
    for k, n in enumerate(lengths):
        pause = pauses[k - 1] if k else 0
        overlap = min(tail, n, fade) if k and not pause and n else 0
        expected += n + pause - overlap
        tail = n if n else (0 if pause else tail)  # what the next piece could overlap with (capped by fade above)
    assert len(out) == expected
    assert out.dtype == np.float32 and np.all(np.abs(out) <= 1.0)


# -- masters -------------------------------------------------------------------------------------------------------


def test_master_names_never_contain_user_text(tmp_path):
    day, stem = master_stem("../../etc/passwd")
    assert "/" not in stem and "passwd" not in stem and ".." not in stem
    assert "job42" in master_stem(42)[1]
    assert master_stem(1)[1] != master_stem(1)[1]


def test_master_writer_finishes_atomically_and_aborts_cleanly(tmp_path):
    audio = np.sin(np.linspace(0, 100, 24000)).astype(np.float32) * 0.5
    writer = MasterWriter(tmp_path, 3, 24000)
    assert not writer.path.exists()
    writer.write(audio[:10000])
    writer.write(audio[10000:])
    path = writer.finish({"script": "hi"})
    data, sr = sf.read(str(path), dtype="float32")
    assert sr == 24000 and len(data) == 24000
    assert np.max(np.abs(data - audio)) <= 1 / 32767
    assert json.loads(writer.sidecar_path.read_text())["samples"] == 24000
    aborted = MasterWriter(tmp_path, 4, 24000)
    aborted.write(audio)
    aborted.abort()
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([path.name, writer.sidecar_path.name])


@pytest.mark.parametrize("fmt", ["flac", "opus"])
def test_export_master(tmp_path, fmt):
    audio = (np.sin(np.linspace(0, 2000, 48000)) * 0.3).astype(np.float32)
    wav = tmp_path / "m.wav"
    sf.write(str(wav), audio, 24000, subtype="PCM_16")
    out = export_master(wav, fmt)
    info = sf.info(str(out))
    assert out.suffix == (".flac" if fmt == "flac" else ".ogg")
    assert info.duration == pytest.approx(2.0, abs=0.05)
    assert format_for_suffix(out) == fmt
    with pytest.raises(ValueError, match=r"\.wav, \.flac or \.ogg"):
        format_for_suffix(tmp_path / "x.mp3")


# -- ETA -----------------------------------------------------------------------------------------------------------


def test_eta_store_moving_average_persists(tmp_path):
    path = tmp_path / "eta" / "eta.json"
    store = EtaStore(path)
    assert store.rate("m|cpu") is None
    assert store.update("m|cpu", 2.0) == 2.0
    assert store.update("m|cpu", 4.0) == pytest.approx(2.6)
    reloaded = EtaStore(path)
    assert reloaded.rate("m|cpu") == pytest.approx(2.6)
    assert reloaded.rate("m|cuda") is None
    assert list(path.parent.iterdir()) == [path]  # no temp files left


def test_eta_store_keeps_one_speed_per_batch_load_and_borrows_the_nearest(tmp_path):
    store = EtaStore(tmp_path / "eta.json")
    store.update("m|cuda", 0.1)  # alone on the device
    store.update("m|cuda", 0.4, load=7)  # one of 7 rows (bucket 8)
    again = EtaStore(tmp_path / "eta.json")
    assert again.rate("m|cuda") == pytest.approx(0.1) and again.rate("m|cuda", 1) == pytest.approx(0.1)
    assert again.rate("m|cuda", 5) == pytest.approx(0.4)  # 5 rows: bucket 8
    assert again.rate("m|cuda", 2) == pytest.approx(0.1)  # bucket 2: nearer to 1 than to 8
    assert again.rate("m|cuda", 32) == pytest.approx(0.4)  # never measured: the nearest load measured
    assert again.rate("other|cuda", 8) is None


def test_eta_store_ignores_a_corrupt_file(tmp_path):
    path = tmp_path / "eta.json"
    path.write_text("{not json")
    store = EtaStore(path)
    assert store.rate("k") is None
    store.update("k", 1.5)
    assert EtaStore(path).rate("k") == 1.5


def test_eta_store_is_safe_from_threads(tmp_path):
    store = EtaStore(tmp_path / "eta.json")
    threads = [threading.Thread(target=store.update, args=(f"k{i % 3}", 1.0 + i)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    data = json.loads((tmp_path / "eta.json").read_text())
    assert sum(entry["renders"] for entry in data.values()) == 12


def test_render_eta_blends_prior_with_measured_speed():
    eta = RenderEta(total_units=20.0, prior_rate=2.0)
    assert eta.remaining_s(0.0, 0.0) == pytest.approx(40.0)
    # Measured twice as fast as the prior after 10 s of speech: the estimate moves most of the way toward it.
    remaining = eta.remaining_s(10.0, 10.0)
    assert 10.0 < remaining < 20.0 * 0.75
    assert eta.remaining_s(20.0, 30.0) == 0.0
    assert RenderEta(10.0, None).remaining_s(0.0, 0.0) > 0
