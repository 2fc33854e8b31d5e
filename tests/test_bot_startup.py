from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from discord import app_commands

from bot.app import open_bot
from bot.cli.run import main
from bot.client import INITIAL_EXTENSIONS, SORRY, user_message
from bot.errors import UnknownVoice
from bot.settings import Settings, SettingsError
from db import repo
from db.engine import open_database


def make_settings(tmp_path: Path, **kw) -> Settings:
    values = (
        dict(
            device="cpu",
            data_dir=tmp_path / "data",
            outputs_dir=tmp_path / "out",
            log_dir=tmp_path / "logs",
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'data' / 'n.db'}",
        )
        | kw
    )
    return Settings(**values)


@pytest.mark.asyncio
async def test_open_bot_loads_every_cog_marks_interrupted_and_closes(
    tmp_path: Path, tiny_custom_voice, tiny_base, tiny_voice_design
) -> None:
    models = [str(tiny_custom_voice), str(tiny_base), str(tiny_voice_design)]
    settings = make_settings(tmp_path, custom_voice_model=models[0], base_model=models[1], voice_design_model=models[2])
    db = await open_database(settings.database_url)
    async with db.sessions.begin() as s:
        left = await repo.add_render(s, 1, 2, 3, "[Calm] hello", None)
        await repo.mark_render(s, left.id, "running")
    await db.close()

    async with open_bot(settings, sync_commands=False) as bot:
        await bot.setup_hook()
        assert set(bot.extensions) == set(INITIAL_EXTENSIONS)
        top = {c.name: c for c in bot.tree.get_commands()}
        assert {"say", "stop", "skip", "queue", "join", "leave", "voice", "voices", "settings"} <= set(top)
        assert {c.name for c in top["voice"].commands} == {"lock", "unlock", "show", "list", "design", "delete", "consent",
                                                          "mine", "revoke"}  # fmt: skip
        assert {c.name for c in top["voices"].commands} == {"register", "design", "remove", "restrict"}
        assert top["voices"].default_permissions.manage_guild
        for command in top["voices"].commands:  # enforced locally too, not only as a sync-time hint
            assert command.checks, f"/voices {command.name} has no permission check"
        assert len(bot.services.workers) == 1 and bot.services.workers[0].device == "cpu"
        assert bot.services.workers[0].narrator.engine.loaded() == models  # every checkpoint loaded at start
        async with bot.services.db.sessions() as s:
            pending = await repo.unnotified_interrupted(s)
        assert [r.id for r in pending] == [left.id]
    assert bot.is_closed()
    assert settings.outputs_dir.is_dir()


def test_run_without_token_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="DISCORD_TOKEN"):
        main(argparse.Namespace(no_sync=True), make_settings(tmp_path))


def test_error_mapping_user_errors_permissions_and_unexpected() -> None:
    wrapped = app_commands.CommandInvokeError.__new__(app_commands.CommandInvokeError)
    wrapped.original = UnknownVoice("There is no voice called `x`.")
    assert user_message(wrapped) == "There is no voice called `x`."
    assert "manage guild" in user_message(app_commands.MissingPermissions(["manage_guild"]))
    crash = app_commands.CommandInvokeError.__new__(app_commands.CommandInvokeError)
    crash.original = ZeroDivisionError()
    assert user_message(crash) is None and "logged" in SORRY
