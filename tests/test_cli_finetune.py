"""Issue 17's fine-tuning small things: required options shown as required, epoch numbers in the log, one --device
default for both tools."""

from __future__ import annotations

import csv

import pytest

from finetuning.config import SFTConfig
from tests.test_finetune import _cfg, train_jsonl  # noqa: F401  (a module fixture: 3 encoded clips)

pytestmark = [pytest.mark.timeout(600), pytest.mark.usefixtures("one_torch_thread")]


def test_help_shows_the_four_paths_as_required_without_empty_defaults():
    text = SFTConfig.parser().format_help()
    usage = text.split("\n\n")[0]
    for flag in ("--init-model", "--train-jsonl", "--speaker-name", "--output-dir"):
        assert f"[{flag}" not in usage and flag in usage  # not in brackets: required
    assert "()" not in text
    with pytest.raises(SystemExit) as exit_info:
        SFTConfig.from_argv(["--init-model", "m"])
    assert exit_info.value.code == 2


def test_both_tools_default_to_the_same_device(capsys):
    from finetuning import prepare_data

    with pytest.raises(SystemExit):
        prepare_data.main(["--help"])
    assert f"({SFTConfig().device})" in capsys.readouterr().out.replace("\n", " ").replace("  ", " ")
    assert SFTConfig().device == "auto"


def test_log_numbers_epochs_from_zero_one_per_pass(tiny_base, train_jsonl, tmp_path):  # noqa: F811
    from finetuning.sft_12hz import run

    # 3 clips, batch 2, no accumulation: 2 optimizer steps per epoch (the second on the epoch's last, short batch)
    run(_cfg(tiny_base, train_jsonl, tmp_path / "run", num_epochs=2, grad_accum_steps=1, batch_size=2))
    with open(tmp_path / "run" / "train_log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(float(r["step"])) for r in rows] == [1, 2, 3, 4]
    assert [int(float(r["epoch"])) for r in rows] == [0, 0, 1, 1]
