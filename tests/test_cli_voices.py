"""Issue 17 item 4 and the small things: `render --clone`, `voices clone/speakers/list`, `invite-url`, `render --voice`
on its own checkpoint, and a preset render's sidecar naming only the models it used (tiny checkpoints, CPU)."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
import soundfile as sf

from bot.cli import main
from bot.invite import required_permissions
from tests.clips import voiced_wav_bytes

pytestmark = pytest.mark.timeout(600)
APP_ID = 123456789012345678
TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GaBcDe.not-a-real-secret"  # the first segment is base64 of APP_ID


@pytest.fixture
def env(tmp_path, monkeypatch):
    for name in ("DISCORD_TOKEN", "NARRATOR_MODEL", "NARRATOR_BASE_MODEL", "NARRATOR_DESIGN_MODEL", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NARRATOR_OUTPUTS_DIR", str(tmp_path / "outputs"))
    monkeypatch.setenv("NARRATOR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NARRATOR_DEVICE", "cpu")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path


def narrator(*argv: str) -> int:
    return main(["--env-file", "/nonexistent/.env", *argv])


def sidecar_of(env) -> dict:
    (path,) = (env / "outputs").rglob("*.json")
    return json.loads(path.read_text())


def test_invite_url_from_the_token_or_the_option(env, monkeypatch, capsys):
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)
    assert narrator("invite-url") == 0
    query = parse_qs(urlparse(capsys.readouterr().out.strip()).query)
    assert query["client_id"] == [str(APP_ID)] and query["permissions"] == [str(required_permissions().value)]
    assert set(query["scope"][0].split()) == {"bot", "applications.commands"}
    assert narrator("invite-url", "--application-id", "42") == 0 and "client_id=42" in capsys.readouterr().out
    monkeypatch.setenv("DISCORD_TOKEN", "not a token")
    assert narrator("invite-url") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--application-id" in err and "Application ID" in err
    monkeypatch.delenv("DISCORD_TOKEN")
    assert narrator("invite-url") == 2 and "DISCORD_TOKEN is not set" in capsys.readouterr().err


def test_voices_list_says_when_empty_and_has_a_header(env, capsys):
    assert narrator("voices", "list") == 0
    assert capsys.readouterr().out.startswith("no voices yet")


def test_speakers_and_languages_of_a_checkpoint(env, tiny_custom_voice, capsys):
    assert narrator("voices", "speakers", "--model", str(tiny_custom_voice)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{tiny_custom_voice} (custom_voice)"
    assert out[1].startswith("speakers: ") and "vivian" in out[1].lower() and "ryan" in out[1].lower()
    assert out[2].startswith("languages: auto, ") and "english" in out[2]


def test_render_clone_stores_nothing(env, tiny_custom_voice, tiny_base):
    clip = env / "me.wav"
    clip.write_bytes(voiced_wav_bytes(2.0, 16_000))
    out = env / "cloned.wav"
    assert narrator("render", "Hello there.", "--model", str(tiny_custom_voice), "--base-model", str(tiny_base),
                    "--clone", str(clip), "--transcript", "Hello, this is me.", "--out", str(out),
                    "--max-frames", "6") == 0  # fmt: skip
    assert sf.info(str(out)).frames == 6 * 1920
    sidecar = sidecar_of(env)
    (identity,) = sidecar["identities"].values()
    assert identity["kind"] == "cloned" and len(identity["vector"]) == 32
    assert identity["transcript"] == "Hello, this is me."
    assert sidecar["engine"]["design_model"] is None  # no VoiceDesign model was used, none is named
    assert not (env / "data" / "narrator.db").exists() and not (env / "data" / "voices").exists()


def test_voices_clone_adds_it_to_the_library_and_renders_with_it(env, tiny_custom_voice, tiny_base, capsys):
    clip = env / "anna.flac"
    audio, rate = sf.read(__import__("io").BytesIO(voiced_wav_bytes(2.0, 22_050)), dtype="float32")
    sf.write(str(clip), audio, rate, format="FLAC")
    argv = ("voices", "clone", "Anna", "--audio", str(clip), "--transcript", "Hi, I am Anna.",
            "--model", str(tiny_custom_voice), "--base-model", str(tiny_base))  # fmt: skip
    assert narrator(*argv) == 2 and "--consent" in capsys.readouterr().err
    assert narrator(*argv, "--consent") == 0
    assert "cloned 'Anna'" in capsys.readouterr().out
    assert narrator(*argv, "--consent") == 2 and "already exists" in capsys.readouterr().err
    assert narrator("voices", "list") == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split("\t") == ["id", "name", "kind", "scope", "where", "model"]
    assert row.split("\t")[1:5] == ["Anna", "cloned", "guild", "all guilds"]
    (stored,) = (env / "data" / "voices").rglob("*.wav")
    assert sf.info(str(stored)).samplerate == 24000

    # --voice renders with the voice's own checkpoint: the default NARRATOR_MODEL (a hub id, offline) is never tried
    out = env / "anna.wav"
    assert narrator("render", "Hello.", "--voice", "anna", "--out", str(out), "--max-frames", "4") == 0
    (identity,) = sidecar_of(env)["identities"].values()
    assert identity["name"] == "Anna" and identity["model"] == str(tiny_custom_voice)
    assert sidecar_of(env)["engine"]["custom_voice_model"] == str(tiny_custom_voice)
    assert sf.info(str(out)).frames == 4 * 1920


def test_preset_sidecar_names_only_the_models_used(env, tiny_custom_voice, capsys):
    out = env / "p.wav"
    assert narrator("render", "Hi. [Pause 0.2s] Bye.", "--model", str(tiny_custom_voice), "--out", str(out),
                    "--max-frames", "3") == 0  # fmt: skip
    engine = sidecar_of(env)["engine"]
    assert engine["custom_voice_model"] == str(tiny_custom_voice)
    assert engine["design_model"] is None and engine["base_model"] is None
    assert np.isfinite(sf.read(str(out))[0]).all()
