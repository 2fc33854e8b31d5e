from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bot.cli import main as cli_main
from bot.narration.identity import vector_from_bytes
from db import repo
from db.engine import current, open_database, upgrade


def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'n.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("NARRATOR_DATA_DIR", str(tmp_path / "data"))
    return url


def test_import_registers_a_finetuned_voice_and_lists_it(tiny_custom_voice, tmp_path, monkeypatch, capsys) -> None:
    url = _env(monkeypatch, tmp_path)
    args = [
        "--env-file",
        str(tmp_path / "none.env"),
        "voices",
        "import",
        str(tiny_custom_voice),
        "--name",
        "Hero",
        "--speaker",
        "Vivian",
        "--guild",
        "42",
    ]
    assert cli_main(args) == 0
    assert "imported 'Hero' (speaker vivian" in capsys.readouterr().out
    assert cli_main(["--env-file", str(tmp_path / "none.env"), "voices", "list"]) == 0
    listed = capsys.readouterr().out
    assert "Hero\tfinetuned\tguild\tguild 42" in listed

    import asyncio

    async def stored() -> repo.Voice:
        db = await open_database(url)
        async with db.sessions() as s:
            voice = await repo.find_voice(s, 42, 7, "hero")
        await db.close()
        return voice

    voice = asyncio.run(stored())
    assert voice.kind == "finetuned" and voice.speaker == "vivian" and Path(voice.model) == Path(tiny_custom_voice)
    timbre = vector_from_bytes(voice.timbre)
    assert timbre.shape == (32,) and np.isfinite(timbre).all() and np.abs(timbre).sum() > 0
    # a second import under the same name is refused
    assert cli_main(args) == 2
    assert "already exists" in capsys.readouterr().err


def test_import_rejects_bad_folders_and_ambiguous_speakers(tiny_custom_voice, tmp_path, monkeypatch, capsys) -> None:
    _env(monkeypatch, tmp_path)
    base = ["--env-file", str(tmp_path / "none.env"), "voices", "import"]
    assert cli_main([*base, str(tmp_path), "--name", "x"]) == 2
    assert "no config.json" in capsys.readouterr().err
    assert cli_main([*base, str(tiny_custom_voice), "--name", "x"]) == 2
    assert "several speakers" in capsys.readouterr().err
    assert cli_main([*base, str(tiny_custom_voice), "--name", "x", "--speaker", "nobody"]) == 2
    assert "not in the checkpoint" in capsys.readouterr().err


def test_db_cli_upgrade_and_current(tmp_path, monkeypatch, capsys) -> None:
    url = _env(monkeypatch, tmp_path)
    assert cli_main(["--env-file", str(tmp_path / "none.env"), "db", "current"]) == 0
    assert "empty" in capsys.readouterr().out
    assert cli_main(["--env-file", str(tmp_path / "none.env"), "db", "upgrade"]) == 0
    assert current(url) is not None
    upgrade(url)
