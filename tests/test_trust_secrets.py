"""Secrets and quiet logs: the token out of repr, DATABASE_URL's password masked, the lifecycle settings range-checked,
a corrupt database as one line with exit code 2, unknown prefix commands ignored quietly, resume state loaded safely."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch
from discord.ext import commands

from bot.cli import main as narrator
from bot.client import NarratorBot
from bot.settings import Settings, SettingsError
from finetuning.checkpoint import TRAINER_STATE, load_trainer_state

URL = "postgresql+asyncpg://narrator:p%40ss%25w0rd@db.example/narrator"


def test_the_token_and_the_database_password_never_show() -> None:
    settings = Settings(discord_token="MTIz.secret-token", database_url=URL)
    for text in (repr(settings), str(settings), str(settings.describe())):
        assert "secret-token" not in text and "w0rd" not in text
    assert settings.describe()["database_url"] == "postgresql+asyncpg://narrator:***@db.example/narrator"
    assert settings.describe()["discord_token"] == "<set>"


@pytest.mark.parametrize(
    ("env", "value", "message"),
    [
        ("NARRATOR_RETENTION_DAYS", "0", "NARRATOR_RETENTION_DAYS must be a number from 0.01"),
        ("NARRATOR_MAX_PERSONAL_VOICES", "-1", "NARRATOR_MAX_PERSONAL_VOICES must be a whole number from 0"),
        ("NARRATOR_OUTPUTS_MAX_BYTES", "10", "NARRATOR_OUTPUTS_MAX_BYTES must be a whole number from 1.04858e+06"),
        ("NARRATOR_STUCK_STEP_S", "nan", "NARRATOR_STUCK_STEP_S must be a number from 1"),
        ("NARRATOR_KEEP_GUILD_DATA", "maybe", "NARRATOR_KEEP_GUILD_DATA must be true or false"),
    ],
)
def test_lifecycle_settings_are_range_checked(monkeypatch, env, value, message) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError, match=message.replace("+", r"\+")):
        Settings.from_env(None)


def test_lifecycle_settings_are_read(monkeypatch) -> None:
    for env, value in {"NARRATOR_RETENTION_DAYS": "7", "NARRATOR_MAX_PERSONAL_VOICES": "2",
                       "NARRATOR_MIN_FREE_BYTES": "0", "NARRATOR_KEEP_GUILD_DATA": "yes"}.items():  # fmt: skip
        monkeypatch.setenv(env, value)
    settings = Settings.from_env(None)
    assert (settings.retention_days, settings.max_personal_voices, settings.min_free_bytes) == (7.0, 2, 0)
    assert settings.keep_guild_data is True and Settings().keep_guild_data is False


def test_a_corrupt_database_is_one_line_and_exit_code_2(tmp_path, monkeypatch, capsys) -> None:
    broken = tmp_path / "narrator.db"
    broken.write_bytes(b"this is not a database" * 100)
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{broken}")
    assert narrator(["--env-file", str(tmp_path / "none.env"), "db", "current"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("narrator: ") and "not a valid SQLite database" in err and "\n" not in err
    assert "Traceback" not in err


@pytest.mark.asyncio
async def test_unknown_prefix_commands_are_ignored_quietly(caplog) -> None:
    bot = NarratorBot(Settings(), sync_commands=False)
    context = SimpleNamespace(author=SimpleNamespace(id=5), command=None)
    with caplog.at_level(logging.DEBUG):
        await bot.on_command_error(context, commands.CommandNotFound('Command "hello" is not found'))
        await bot.on_command_error(context, commands.NotOwner())
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    with caplog.at_level(logging.DEBUG):
        await bot.on_command_error(context, commands.CommandError("broken"))
    assert [r for r in caplog.records if r.levelno == logging.ERROR]


class Payload:
    """Anything but plain data: unpickling it could run code."""

    def __reduce__(self):
        return (print, ("this would run at load time",))


def test_resume_state_is_loaded_with_weights_only(tmp_path) -> None:
    good = tmp_path / "good"
    good.mkdir()
    torch.save({"position": {"step": 3}, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.99)}]},
                "torch_rng": torch.get_rng_state()}, good / TRAINER_STATE)  # fmt: skip
    assert load_trainer_state(good)["position"] == {"step": 3}
    evil = tmp_path / "evil"
    evil.mkdir()
    torch.save({"position": Payload()}, evil / TRAINER_STATE)
    with pytest.raises(ValueError, match="could run code"):
        load_trainer_state(evil)
