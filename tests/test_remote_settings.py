"""Settings and wiring of remote engines and shards: NARRATOR_ENGINE_URLS / _KIND / _SHARD_* read and range-checked
with one sentence naming the variable; build_engines picks the remote engine; the bot is sharded as asked;
`narrator serve` refuses bad arguments with exit code 2."""

from __future__ import annotations

import pytest

from bot.app import build_engines
from bot.cli import build_parser
from bot.cli import main as cli_main
from bot.engine.remote import RemoteEngine
from bot.settings import Settings, SettingsError


@pytest.fixture
def env(monkeypatch):
    for name in ("NARRATOR_ENGINE_URLS", "NARRATOR_ENGINE_KIND", "NARRATOR_SHARD_COUNT", "NARRATOR_SHARD_IDS",
                 "NARRATOR_REMOTE_WORKERS", "NARRATOR_ENGINE_TIMEOUT_S"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_engine_urls_and_shards_from_the_environment(env) -> None:
    env.setenv("NARRATOR_ENGINE_URLS", " http://gpu1:8000 , http://gpu2:8000/ ")
    env.setenv("NARRATOR_SHARD_COUNT", "8")
    env.setenv("NARRATOR_SHARD_IDS", "0,2-4")
    env.setenv("NARRATOR_REMOTE_WORKERS", "3")
    settings = Settings.from_env(None)
    assert settings.engine_urls == ("http://gpu1:8000", "http://gpu2:8000/")
    assert settings.shard_count == 8 and settings.shard_ids == (0, 2, 3, 4)
    engines = build_engines(settings)
    assert len(engines) == 1 and isinstance(engines[0], RemoteEngine)
    assert engines[0].capabilities.max_streams == 3  # the worker's slots: renders at once
    assert [s.url for s in engines[0].pool.servers] == ["http://gpu1:8000", "http://gpu2:8000"]


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("NARRATOR_ENGINE_URLS", "gpu1:8000", "NARRATOR_ENGINE_URLS must be http(s) URLs"),
        ("NARRATOR_ENGINE_KIND", "triton", "NARRATOR_ENGINE_KIND must be"),
        ("NARRATOR_ENGINE_TIMEOUT_S", "0", "NARRATOR_ENGINE_TIMEOUT_S must be 1-3600"),
        ("NARRATOR_REMOTE_WORKERS", "0", "NARRATOR_REMOTE_WORKERS must be 1-256"),
        ("NARRATOR_SHARD_COUNT", "0", "NARRATOR_SHARD_COUNT must be 1-4096"),
        ("NARRATOR_SHARD_IDS", "0,1", "needs NARRATOR_SHARD_COUNT"),
        ("NARRATOR_SHARD_IDS", "a-b", "shard numbers and ranges"),
    ],
)
def test_bad_values_are_one_sentence_naming_the_variable(env, name, value, words) -> None:
    env.setenv(name, value)
    with pytest.raises(SettingsError, match=words.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_env(None)


def test_shard_ids_outside_the_count_are_refused(env) -> None:
    env.setenv("NARRATOR_SHARD_COUNT", "2")
    env.setenv("NARRATOR_SHARD_IDS", "1-2")
    with pytest.raises(SettingsError, match="from 0 to 1"):
        Settings.from_env(None)


def test_the_bot_is_sharded_as_configured() -> None:
    from discord.ext import commands

    from bot.client import bot_for

    bot = bot_for(Settings(shard_count=4, shard_ids=(2, 3)))
    assert isinstance(bot, commands.AutoShardedBot)
    assert bot.shard_count == 4 and list(bot.shard_ids) == [2, 3]
    unsharded = bot_for(Settings())
    assert not isinstance(unsharded, commands.AutoShardedBot)  # one connection; drops a refused intent on the fly


def test_serve_arguments(capsys) -> None:
    args = build_parser().parse_args(["serve", "--model", "m", "--api-key", "a", "--api-key", "b", "--port", "9"])
    assert args.api_key == ["a", "b"] and args.host == "127.0.0.1" and args.port == 9
    assert cli_main(["--env-file", "/nonexistent", "serve", "--model", "m", "--port", "70000"]) == 2
    assert "--port must be 1-65535" in capsys.readouterr().err
    assert cli_main(["--env-file", "/nonexistent", "serve", "--model", "m", "--max-streams", "0"]) == 2
    assert "max_streams must be" in capsys.readouterr().err
