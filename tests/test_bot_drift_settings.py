"""NARRATOR_DRIFT_THRESHOLD / _RETRIES / _PROBE_SECONDS: read and checked by `Settings`, and they reach the drift guard
of the narrator the bot builds (real engine on tiny checkpoints, CPU)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from bot.cli.render import build_narrator
from bot.jobs.queue import Job
from bot.narration import DriftGuard
from bot.narration import planning as narrate
from bot.narration.production import Finished
from bot.settings import Settings, SettingsError
from db.engine import open_database
from tests.clips import voiced_wav_bytes
from tests.services import services_for

GUILD, ALICE = 10, 1


def test_defaults_are_the_guards_own() -> None:
    guard = DriftGuard()
    assert Settings().drift_guard_options() == {
        "threshold": guard.threshold,
        "max_retries": guard.max_retries,
        "probe_seconds": guard.probe_seconds,
    }


def test_environment_sets_the_three(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NARRATOR_DRIFT_THRESHOLD", "0.72")
    monkeypatch.setenv("NARRATOR_DRIFT_RETRIES", "4")
    monkeypatch.setenv("NARRATOR_DRIFT_PROBE_SECONDS", "0.8")
    settings = Settings.from_env(None)
    assert (settings.drift_threshold, settings.drift_retries, settings.drift_probe_seconds) == (0.72, 4, 0.8)


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("NARRATOR_DRIFT_THRESHOLD", "high", "must be a number, got 'high'"),
        ("NARRATOR_DRIFT_THRESHOLD", "1.5", "between -1 and 1"),
        ("NARRATOR_DRIFT_THRESHOLD", "-2", "between -1 and 1"),
        ("NARRATOR_DRIFT_THRESHOLD", "nan", "between -1 and 1"),
        ("NARRATOR_DRIFT_RETRIES", "2.5", "must be an integer, got '2.5'"),
        ("NARRATOR_DRIFT_RETRIES", "-1", ">= 0"),
        ("NARRATOR_DRIFT_PROBE_SECONDS", "-0.5", ">= 0"),
        ("NARRATOR_DRIFT_PROBE_SECONDS", "inf", ">= 0"),
    ],
)
def test_bad_values_name_the_variable_and_the_fix(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, needle: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=name) as info:
        Settings.from_env(None)
    assert needle in str(info.value)


def test_narrator_render_uses_them(tmp_path: Path) -> None:
    settings = Settings(drift_threshold=0.8, drift_retries=5, drift_probe_seconds=0.7, data_dir=tmp_path)
    args = argparse.Namespace(model="unused-model", base_model="unused-base", design=None, design_model=None)
    guard = build_narrator(args, settings).guard  # builds no model: checkpoints load on first use
    assert guard == DriftGuard(threshold=0.8, max_retries=5, probe_seconds=0.7, enabled=True)


@pytest.mark.asyncio
@pytest.mark.slow
async def test_a_forcing_threshold_set_in_the_environment_resamples_bot_renders(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_custom_voice, tiny_base, tiny_voice_design
) -> None:
    env = {
        "NARRATOR_MODEL": str(tiny_custom_voice), "NARRATOR_BASE_MODEL": str(tiny_base),
        "NARRATOR_DESIGN_MODEL": str(tiny_voice_design), "NARRATOR_DEVICE": "cpu", "NARRATOR_DTYPE": "float32",
        "NARRATOR_DATA_DIR": str(tmp_path / "data"), "NARRATOR_OUTPUTS_DIR": str(tmp_path / "out"),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'n.db'}",
        "NARRATOR_DRIFT_THRESHOLD": "1.01", "NARRATOR_DRIFT_RETRIES": "1", "NARRATOR_DRIFT_PROBE_SECONDS": "0.5",
    }  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env(None)
    db = await open_database(settings.database_url)
    services = services_for(settings, db)
    await services.start()
    try:
        voice = await services.creation.clone(
            GUILD, ALICE, "Reader", voiced_wav_bytes(2.0), "r.wav", "hello there", True
        )
        plan = await narrate.plan(
            "[Calm] Stop right there.", 2000, voice, lambda name: services.library.resolve(GUILD, ALICE, name)
        )
        finished: list = []

        async def work(job: Job, worker) -> None:
            async for event in narrate.render(worker.narrator, plan, job.cancel_event, 1):
                if isinstance(event, Finished):
                    finished.append(event)

        job = Job(GUILD, ALICE, work)
        services.queue.submit(job)
        await job.done
    finally:
        await services.shutdown()
        await db.close()

    sidecar = json.loads(finished[0].master_path.with_suffix(".json").read_text())
    assert sidecar["guard"] == {"threshold": 1.01, "max_retries": 1, "probe_seconds": 0.5, "enabled": True}
    speeches = [s for s in sidecar["segments"] if s["kind"] == "speech"]
    assert speeches and all(s["attempts"] == 2 and len(s["probe_scores"]) == 2 for s in speeches)  # 1 + 1 retry
