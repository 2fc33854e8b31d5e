from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import build_parser, main
from bot.settings import Settings, SettingsError
from bot.voice.opus import ensure_opus

REPO = Path(__file__).resolve().parents[1]


def test_help_lists_subcommands() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bot.cli", "--help"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    for sub in ("run", "render", "db", "voices"):
        assert sub in out


def test_help_does_not_import_torch() -> None:
    code = "import sys; from bot.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_missing_token_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SettingsError, match="DISCORD_TOKEN"):
        Settings.from_env(None).require_token()


def test_env_file_is_read_and_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("DISCORD_TOKEN=from-file\nNARRATOR_DEVICE=cpu\nNARRATOR_DEV_GUILD_ID=42\n")
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    monkeypatch.delenv("NARRATOR_DEV_GUILD_ID", raising=False)
    monkeypatch.setenv("NARRATOR_DEVICE", "cuda:1")
    settings = Settings.from_env(env)
    assert settings.discord_token == "from-file"
    assert settings.device == "cuda:1"
    assert settings.dev_guild_id == 42
    assert settings.describe()["discord_token"] == "<set>"


def test_bad_integer_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NARRATOR_DEV_GUILD_ID", "not-a-number")
    with pytest.raises(SettingsError, match="NARRATOR_DEV_GUILD_ID"):
        Settings.from_env(None)


def test_default_database_is_sqlite_under_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("NARRATOR_DATA_DIR", "/tmp/narrator-data")
    assert Settings.from_env(None).database_url == "sqlite+aiosqlite:////tmp/narrator-data/narrator.db"


def test_cli_reports_settings_error_without_traceback(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("NARRATOR_DEV_GUILD_ID", "x")
    assert main(["db", "current"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("narrator: NARRATOR_DEV_GUILD_ID") and "Traceback" not in err


def test_parser_requires_out_for_render() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["render", "hello"])


def test_libopus_loads_and_encodes() -> None:
    import discord.opus

    assert ensure_opus()
    encoder = discord.opus.Encoder()
    packet = encoder.encode(b"\x00" * discord.opus.Encoder.FRAME_SIZE, discord.opus.Encoder.SAMPLES_PER_FRAME)
    assert 0 < len(packet) < 200
