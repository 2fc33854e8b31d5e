"""Issue 17 items 5 and 7: every bad input of the `narrator` command is one line on stderr naming the file, option or
variable and what to do, with exit code 2, found before any model work where possible. Run as the operator runs it:
`python -m bot.cli` in a subprocess (its own exit code, its own stderr)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(600)

REPO = Path(__file__).resolve().parents[1]
FAKE_TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GaBcDe.not-a-real-secret"  # first segment: base64 of 123456789012345678


def narrator(*argv: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("NARRATOR_", "DISCORD_", "DATABASE_"))}
    environ |= {"PYTHONPATH": str(REPO), "NARRATOR_DATA_DIR": str(cwd / "data"), "HF_HUB_OFFLINE": "1",
                "NARRATOR_OUTPUTS_DIR": str(cwd / "outputs"), "NARRATOR_LOG_DIR": str(cwd / "logs"), **env}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "bot.cli", "--env-file", str(cwd / "none.env"), *argv], cwd=cwd,
                          env=environ, capture_output=True, text=True, timeout=300)  # fmt: skip


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    """stderr without log records (those start with a timestamp)."""
    return [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("[20")]


def one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    assert result.returncode == 2, result.stderr
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr  # one sentence, no traceback
    assert "Traceback" not in result.stderr and "abandoned" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_device_that_this_machine_lacks_is_one_line(tmp_path):
    one_line_error(narrator("render", "Hi.", "--out", str(tmp_path / "a.wav"), cwd=tmp_path, NARRATOR_DEVICE="gpu"),
                   "NARRATOR_DEVICE", "auto, cpu, cuda")  # fmt: skip
    if not __import__("torch").cuda.is_available():
        line = one_line_error(narrator("render", "Hi.", "--out", str(tmp_path / "a.wav"), cwd=tmp_path,
                                       NARRATOR_DEVICE="cuda"), "NARRATOR_DEVICE")  # fmt: skip
        assert "no CUDA GPU" in line and "use auto or cpu" in line
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").rglob("*.wav"))


def test_unwritable_output_is_found_before_the_render(tmp_path):
    line = one_line_error(narrator("render", "Hi.", "--out", str(tmp_path / "missing" / "a.wav"), cwd=tmp_path),
                          "--out", str(tmp_path / "missing"))  # fmt: skip
    assert "create it" in line
    one_line_error(narrator("render", "Hi.", "--out", str(tmp_path), cwd=tmp_path), "--out", "is a folder")
    (tmp_path / "file").write_text("a file, not a folder")
    one_line_error(narrator("render", "Hi.", "--out", str(tmp_path / "a.wav"), cwd=tmp_path,
                            NARRATOR_OUTPUTS_DIR=str(tmp_path / "file" / "outputs")), "NARRATOR_OUTPUTS_DIR",
                   "cannot write")  # fmt: skip
    if os.geteuid() != 0:  # root writes anywhere; the cases above fail for root too
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            one_line_error(narrator("render", "Hi.", "--out", str(locked / "a.wav"), cwd=tmp_path), "--out", "write")
        finally:
            locked.chmod(0o700)


def test_parse_time_and_script_checks(tmp_path):
    bad_frames = narrator("render", "Hi.", "--out", str(tmp_path / "a.wav"), "--max-frames", "-5", cwd=tmp_path)
    assert bad_frames.returncode == 2 and "--max-frames: must be at least 1, got -5" in bad_frames.stderr
    assert "Traceback" not in bad_frames.stderr
    one_line_error(narrator("render", "x" * 50, "--out", str(tmp_path / "a.wav"), cwd=tmp_path,
                            NARRATOR_MAX_SCRIPT_CHARS="20"), "NARRATOR_MAX_SCRIPT_CHARS", "50 characters")  # fmt: skip


def test_group_commands_alone_print_their_usage(tmp_path):
    for group, commands in (("db", ("upgrade", "current")), ("voices", ("import", "list", "clone", "speakers"))):
        result = narrator(group, cwd=tmp_path)
        assert result.returncode == 2 and "required" not in result.stderr
        assert f"usage: narrator {group}" in result.stderr and all(c in result.stderr for c in commands)


def test_clone_without_consent_is_refused_before_anything(tmp_path):
    line = one_line_error(narrator("voices", "clone", "Anna", "--audio", str(tmp_path / "none.wav"), "--transcript",
                                   "Hello.", cwd=tmp_path), "--consent")  # fmt: skip
    assert "consent" in line
    assert not (tmp_path / "data").exists()  # no database was even created


def test_missing_reference_clip_names_the_file(tmp_path):
    one_line_error(narrator("render", "Hi.", "--out", str(tmp_path / "a.wav"), "--clone", str(tmp_path / "me.wav"),
                            "--transcript", "Hello.", cwd=tmp_path), "--clone", "me.wav")  # fmt: skip
    (tmp_path / "notes.wav").write_text("not audio")
    one_line_error(narrator("render", "Hi.", "--out", str(tmp_path / "a.wav"), "--clone", str(tmp_path / "notes.wav"),
                            "--transcript", "Hello.", cwd=tmp_path), "notes.wav", "not a sound file")  # fmt: skip


def test_broken_model_folder_is_one_line(tmp_path):
    broken = tmp_path / "ckpt"
    broken.mkdir()
    (broken / "config.json").write_text("{ not json")
    line = one_line_error(narrator("render", "Hi.", "--out", str(tmp_path / "a.wav"), "--model", str(broken),
                                   cwd=tmp_path, NARRATOR_DEVICE="cpu"), "config.json")  # fmt: skip
    assert str(broken) in line


def test_unknown_language_is_one_line_before_generating(tmp_path, tiny_custom_voice):
    line = one_line_error(narrator("render", "Hi.", "--out", str(tmp_path / "a.wav"), "--model", str(tiny_custom_voice),
                                   "--language", "klingon", cwd=tmp_path, NARRATOR_DEVICE="cpu"),
                          "--language klingon", "english")  # fmt: skip
    assert "auto" in line
    assert not list((tmp_path / "outputs").rglob("*.wav"))


def test_run_checks_the_model_before_logging_in(tmp_path):
    result = narrator("run", cwd=tmp_path, DISCORD_TOKEN=FAKE_TOKEN, NARRATOR_MODEL=str(tmp_path / "nonexistent"),
                      NARRATOR_DEVICE="cpu")  # fmt: skip
    line = one_line_error(result, "nonexistent", "does not exist")
    assert "checkpoint" in line
    assert "Logging in" not in result.stderr and "discord.client" not in result.stderr


def test_run_refuses_a_device_before_the_database(tmp_path):
    result = narrator("run", cwd=tmp_path, DISCORD_TOKEN=FAKE_TOKEN, NARRATOR_DEVICE="gpu")
    one_line_error(result, "NARRATOR_DEVICE")
    assert not (tmp_path / "data" / "narrator.db").exists()


def test_unusable_database_is_one_line(tmp_path):
    (tmp_path / "data" / "narrator.db").mkdir(parents=True)  # a folder where the database file should be
    one_line_error(narrator("voices", "list", cwd=tmp_path), "narrator.db")
