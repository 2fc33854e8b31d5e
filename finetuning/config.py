"""``SFTConfig``: every hyper-parameter of a fine-tuning run as a named field, filled from the command line.

``SFTConfig.from_argv(argv)`` builds one ``--flag`` per field (``speaker_name`` -> ``--speaker-name``); the
resolved config is logged once at the start of a run and written into every checkpoint's ``meta_*.json``.
Defaults follow the official ``sft_12hz.py`` (AdamW lr 2e-5, weight decay 0.01, batch 2, 3 epochs, gradient
accumulation 4, clipping 1.0, sub-talker weight 0.3, speaker slot 3000); see qwen3-tts-model.md section 5.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "bf16", "fp32")
REQUIRED_PATHS = ("init_model", "train_jsonl", "speaker_name", "output_dir")  # the CLI needs these four
DEFAULT_DEVICE = "auto"  # both fine-tuning tools: the GPU when there is one, else the CPU


@dataclass
class SFTConfig:
    """One single-speaker fine-tuning run (Base checkpoint + recordings -> CustomVoice checkpoint)."""

    init_model: str = field(default="", metadata={"help": "local Base checkpoint folder to start from"})
    train_jsonl: str = field(default="", metadata={"help": "JSONL written by prepare_data (audio_codes per line)"})
    speaker_name: str = field(default="", metadata={"help": "name of the new speaker in the saved checkpoint"})
    output_dir: str = field(default="", metadata={"help": "folder for checkpoints, logs and the loss curve"})
    speaker_slot: int = field(default=3000, metadata={"help": "codec_embedding row that holds the speaker x-vector"})
    sub_talker_loss_weight: float = field(default=0.3, metadata={"help": "w in loss = CE(c0) + w * CE(c1..c15)"})
    lr: float = field(default=2e-5, metadata={"help": "AdamW learning rate"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    train_text_embedding: bool = field(
        default=True, metadata={"help": "also train the 151k-row text embedding (as the official recipe); "
                                        "--no-train-text-embedding saves its gradient and AdamW state"}
    )  # fmt: skip
    batch_size: int = field(default=2, metadata={"help": "samples per micro-batch"})
    grad_accum_steps: int = field(default=4, metadata={"help": "micro-batches per optimizer step"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm (0 disables clipping)"})
    num_epochs: int = field(default=3, metadata={"help": "passes over the data"})
    max_steps: int = field(default=0, metadata={"help": "stop after this many optimizer steps (0 = no limit)"})
    save_every_steps: int = field(default=0, metadata={"help": "also save every N optimizer steps (0 = per epoch)"})
    log_every_steps: int = field(default=1, metadata={"help": "write a CSV log row every N optimizer steps"})
    precision: str = field(default="auto", metadata={"help": "auto (bf16 autocast on CUDA, fp32 on CPU), bf16, fp32"})
    device: str = field(default=DEFAULT_DEVICE, metadata={"help": "auto, cpu, cuda, cuda:N"})
    seed: int = field(default=0, metadata={"help": "seed of the data order and of torch"})
    save_optimizer: bool = field(default=True, metadata={"help": "keep optimizer state next to each checkpoint"})
    resume_from: str = field(default="", metadata={"help": "checkpoint folder to resume from (same step)"})
    tensorboard: bool = field(default=False, metadata={"help": "also log to TensorBoard (if installed)"})

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming every bad field value and what is allowed."""
        problems = []
        if self.precision not in PRECISIONS:
            problems.append(f"precision={self.precision!r} (allowed: {PRECISIONS})")
        for name in ("batch_size", "grad_accum_steps", "num_epochs", "log_every_steps"):
            if getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)} (must be >= 1)")
        for name in ("max_steps", "save_every_steps", "lr", "weight_decay", "max_grad_norm", "sub_talker_loss_weight"):
            if getattr(self, name) < 0:
                problems.append(f"{name}={getattr(self, name)} (must be >= 0)")
        if self.speaker_slot < 0:
            problems.append(f"speaker_slot={self.speaker_slot} (must be a codec_embedding row >= 0)")
        if problems:
            raise ValueError("bad fine-tuning config: " + "; ".join(problems))

    def require_paths(self) -> None:
        """The CLI needs these four; tests may build configs without them."""
        missing = [f"--{n.replace('_', '-')}" for n in REQUIRED_PATHS if not getattr(self, n)]
        if missing:
            raise ValueError(f"missing required options: {', '.join(missing)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def log_resolved(self) -> None:
        log.info("fine-tuning config:\n%s", json.dumps(self.to_dict(), indent=2, sort_keys=True))

    @classmethod
    def parser(cls) -> argparse.ArgumentParser:
        p = argparse.ArgumentParser(
            prog="python -m finetuning.sft_12hz",
            description="Fine-tune a Qwen3-TTS 12 Hz Base checkpoint on one speaker into a CustomVoice checkpoint.",
        )
        for f in dataclasses.fields(cls):
            flag, default, helptext = f"--{f.name.replace('_', '-')}", f.default, f.metadata.get("help", "")
            if f.name in REQUIRED_PATHS:  # shown as required in --help, without a "()" default
                p.add_argument(flag, dest=f.name, required=True, metavar=f.name.split("_")[-1].upper(), help=helptext)
            elif isinstance(default, bool):
                p.add_argument(flag, dest=f.name, default=default, action=argparse.BooleanOptionalAction, help=helptext)
            else:
                shown = default if default != "" else "none"  # an empty default reads as "()" otherwise
                p.add_argument(flag, dest=f.name, type=type(default), default=default, help=f"{helptext} ({shown})")
        return p

    @classmethod
    def from_argv(cls, argv: list[str] | None = None) -> SFTConfig:
        return cls(**vars(cls.parser().parse_args(argv)))
