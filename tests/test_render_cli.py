"""`narrator render` end to end on tiny checkpoints: preset, designed and library voices, WAV and FLAC out."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
import soundfile as sf

from bot.cli import main

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("NARRATOR_OUTPUTS_DIR", str(tmp_path / "outputs"))
    monkeypatch.setenv("NARRATOR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NARRATOR_DEVICE", "cpu")
    (tmp_path / "data").mkdir()
    return tmp_path


def render(*argv: str) -> int:
    return main(["--env-file", "/nonexistent/.env", "render", *argv])


def sidecar_of(env) -> dict:
    (path,) = (env / "outputs").rglob("*.json")
    return json.loads(path.read_text())


def test_render_preset_speaker_to_wav(env, tiny_custom_voice):
    out = env / "out.wav"
    code = render("[Calm] Hello. [Pause 0.2s] [@ryan] Bye.", "--model", str(tiny_custom_voice), "--speaker", "Vivian",
                  "--out", str(out), "--max-frames", "6", "--seed", "4")  # fmt: skip
    assert code == 0
    audio, sr = sf.read(str(out), dtype="float32")
    assert sr == 24000 and len(audio) == 2 * 6 * 1920 + int(0.2 * 24000)  # pause: no crossfade overlap
    sidecar = sidecar_of(env)
    assert sorted(i["speaker"] for i in sidecar["identities"].values()) == ["ryan", "vivian"]
    assert {s["seed"] for s in sidecar["segments"] if s["kind"] == "speech"} == {4}
    assert json.loads((env / "data" / "eta.json").read_text())


def test_render_designed_voice_to_flac(env, tiny_custom_voice, tiny_voice_design, tiny_base):
    out = env / "out.flac"
    code = render("[Sad] Hello there.", "--model", str(tiny_custom_voice), "--design", "a tired old sailor",
                  "--design-model", str(tiny_voice_design), "--base-model", str(tiny_base), "--out", str(out),
                  "--max-frames", "8")  # fmt: skip
    assert code == 0
    assert sf.info(str(out)).format == "FLAC" and sf.info(str(out)).frames == 8 * 1920
    (identity,) = sidecar_of(env)["identities"].values()
    assert identity["kind"] == "designed" and len(identity["vector"]) == 32
    assert sidecar_of(env)["segments"][0]["lock_score"] is not None  # a Base model was given: the guard ran


def test_render_library_voice(env, tiny_custom_voice):
    from db import repo
    from db.engine import open_database

    async def add_voice() -> None:
        db = await open_database(f"sqlite+aiosqlite:///{env / 'data' / 'narrator.db'}")
        vector = np.linspace(-1, 1, 32, dtype="<f4").tobytes()
        async with db.sessions.begin() as s:
            await repo.add_voice(s, repo.NewVoice(guild_id=5, owner_id=1, scope="guild", kind="cloned", name="Nova",
                                                  model=str(tiny_custom_voice), timbre=vector, seed=9))  # fmt: skip
        await db.close()

    asyncio.run(add_voice())
    out = env / "nova.wav"
    assert render("Hi there.", "--model", str(tiny_custom_voice), "--voice", "nova", "--out", str(out),
                  "--max-frames", "5") == 0  # fmt: skip
    assert sf.info(str(out)).frames == 5 * 1920
    (identity,) = sidecar_of(env)["identities"].values()
    assert identity["name"] == "Nova" and identity["seed"] == 9 and identity["vector"][0] == -1.0


def test_render_reports_bad_input(env, tiny_custom_voice, capsys):
    assert render("[Calm Hello", "--out", str(env / "x.wav")) == 2
    assert "never closed" in capsys.readouterr().err
    assert render("Hello", "--out", str(env / "x.mp3")) == 2
    assert ".wav, .flac or .ogg" in capsys.readouterr().err
    assert render("Hi", "--model", str(tiny_custom_voice), "--speaker", "nobody", "--out", str(env / "x.wav")) == 2
    assert "unknown speaker 'nobody'" in capsys.readouterr().err
    assert render("Hi", "--model", str(tiny_custom_voice), "--voice", "ghost", "--out", str(env / "x.wav")) == 2
    assert "no voice called 'ghost'" in capsys.readouterr().err
    assert not list((env / "outputs").rglob("*.wav"))
