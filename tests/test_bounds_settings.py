"""Every setting is range-checked at start (issue 12): a bad value stops `narrator` with one line naming the
variable and what is allowed, exit code 2. One test per kind of setting; the numeric ones are all walked through
their `Bound`, so a setting added later with a range is covered too."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from bot.cli import main
from bot.settings import Settings, SettingsError

BOUNDED = [(f.name, f.metadata["bound"], f.default) for f in dataclasses.fields(Settings) if "bound" in f.metadata]


def test_the_limits_of_issue_12_are_bounded_settings_with_their_defaults() -> None:
    defaults = {name: default for name, _, default in BOUNDED}
    assert defaults["max_queued_per_guild"] == 50 and defaults["max_queued_total"] == 1000
    assert defaults["max_pause_total_s"] == 30.0 and defaults["max_checkpoints_per_script"] == 2
    assert defaults["max_job_audio_s"] == 300.0  # 5 minutes, counted in code frames
    assert {"max_script_chars", "max_queued_per_user", "job_timeout_s", "max_reference_seconds",
            "max_upload_bytes"} <= set(defaults)  # fmt: skip
    for name, bound, default in BOUNDED:
        assert bound.low <= default <= bound.high, name
        assert bound.env.startswith("NARRATOR_"), name


@pytest.mark.parametrize(("name", "bound", "default"), BOUNDED, ids=[name for name, _, _ in BOUNDED])
def test_each_numeric_setting_is_read_and_refused_outside_its_range(monkeypatch, name, bound, default) -> None:
    integer = isinstance(default, int)
    inside = bound.high if integer else (bound.low + bound.high) / 2
    monkeypatch.setenv(bound.env, str(inside))
    assert getattr(Settings.from_env(None), name) == inside  # the variable reaches the setting
    for outside in (bound.low - 1, bound.high + 1):
        monkeypatch.setenv(bound.env, str(int(outside) if integer else outside))
        with pytest.raises(SettingsError) as info:
            Settings.from_env(None)
        message = str(info.value)
        assert message.startswith(bound.env) and "\n" not in message
        assert (
            f"from {bound.low:g} to {bound.high:g}" in message and str(int(outside) if integer else outside) in message
        )


@pytest.mark.parametrize(
    ("variable", "value", "needle"),
    [
        ("NARRATOR_JOB_TIMEOUT_S", "0", "from 1 to 86400 seconds, got 0.0"),
        ("NARRATOR_JOB_TIMEOUT_S", "-5", "from 1 to 86400 seconds"),
        ("NARRATOR_JOB_TIMEOUT_S", "nan", "got nan"),
        ("NARRATOR_JOB_TIMEOUT_S", "inf", "got inf"),
        ("NARRATOR_MAX_PAUSE_TOTAL_S", "-0.1", "from 0 to 600 seconds"),
        ("NARRATOR_MAX_QUEUED_PER_USER", "-1", "whole number from 1 to 1000"),
        ("NARRATOR_MAX_QUEUED_PER_GUILD", "0", "whole number from 1"),
        ("NARRATOR_MAX_QUEUED_TOTAL", "2.5", "must be an integer, got '2.5'"),
        ("NARRATOR_MAX_JOB_AUDIO_S", "lots", "must be a number, got 'lots'"),
        ("NARRATOR_MAX_CHECKPOINTS_PER_SCRIPT", "9", "whole number from 1 to 8"),
        ("NARRATOR_MAX_SCRIPT_CHARS", "0", "from 20 to 100000 characters"),
    ],
)
def test_numbers_zero_negative_and_non_finite_are_refused(monkeypatch, variable, value, needle) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable) as info:
        Settings.from_env(None)
    assert needle in str(info.value)


def test_values_given_in_code_are_checked_too() -> None:
    with pytest.raises(SettingsError, match="NARRATOR_JOB_TIMEOUT_S"):
        Settings(job_timeout_s=0)
    with pytest.raises(SettingsError, match="NARRATOR_MAX_QUEUED_PER_USER"):
        Settings(max_queued_per_user=True)  # a bool is not a count
    with pytest.raises(SettingsError, match="NARRATOR_MAX_QUEUED_TOTAL .*whole number"):
        Settings(max_queued_total=100.5)
    with pytest.raises(SettingsError, match="NARRATOR_MAX_PAUSE_TOTAL_S"):
        Settings(max_pause_total_s=math.nan)
    assert Settings(job_timeout_s=120).job_timeout_s == 120  # an int where a float is expected is fine


@pytest.mark.parametrize(
    ("variable", "value", "needle"),
    [
        ("NARRATOR_DEVICE", "gpu", "auto, cpu, cuda or cuda:N"),
        ("NARRATOR_DEVICE", "cuda:x", "cuda:N"),
        ("NARRATOR_DTYPE", "int8", "auto, bfloat16, float16, float32"),
        ("NARRATOR_COMPILE", "maybe", "true or false"),
        ("NARRATOR_DEV_GUILD_ID", "-3", "positive"),
        ("NARRATOR_DEV_GUILD_ID", "abc", "integer"),
        ("NARRATOR_OWNER_IDS", "1, -2", "positive"),
        ("NARRATOR_OWNER_IDS", "1, bob", "comma-separated list of Discord ids"),
    ],
)
def test_choices_switches_and_ids_are_refused_when_malformed(monkeypatch, variable, value, needle) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable) as info:
        Settings.from_env(None)
    assert needle in str(info.value)


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1"])
def test_every_documented_device_is_accepted(device: str) -> None:
    assert Settings(device=device).device == device


def test_an_empty_model_name_is_refused() -> None:
    with pytest.raises(SettingsError, match="NARRATOR_BASE_MODEL must name a checkpoint"):
        Settings(base_model="  ")


def test_the_cli_stops_with_one_line_and_exit_code_2(monkeypatch, capsys, tmp_path: Path) -> None:
    monkeypatch.setenv("NARRATOR_JOB_TIMEOUT_S", "0")
    assert main(["--env-file", str(tmp_path / "none.env"), "run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("narrator: NARRATOR_JOB_TIMEOUT_S must be")
