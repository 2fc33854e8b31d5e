"""Fine-tune a Qwen3-TTS 12 Hz Base checkpoint on one speaker and save CustomVoice checkpoints.

    python -m finetuning.prepare_data --codec BASE_DIR --input-jsonl raw.jsonl --output-jsonl train.jsonl
    python -m finetuning.sft_12hz --init-model BASE_DIR --train-jsonl train.jsonl --speaker-name anna \\
        --output-dir runs/anna [--num-epochs 3 --batch-size 2 --lr 2e-5 --grad-accum-steps 4 ...]
    python -m finetuning.sft_12hz ... --resume-from runs/anna/checkpoint-step-000040

Every epoch (and every ``--save-every-steps``) writes ``OUTPUT/checkpoint-step-NNNNNN/``, a CustomVoice checkpoint
that ``QwenTTS.from_pretrained`` loads with the new speaker name, plus ``train_log.csv`` and ``loss_curve.png`` in
OUTPUT and in the checkpoint folder. The speaker vector is the mean x-vector of the distinct ``ref_audio`` files
(the official script takes the first batch's), computed once by the Base checkpoint's speaker encoder.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from pathlib import Path

import torch

from finetuning.checkpoint import (
    checkpoint_dir,
    load_talker_weights,
    load_trainer_state,
    normalize_speaker_name,
    save_checkpoint,
    weights_dtype,
)
from finetuning.config import SFTConfig
from finetuning.data import SFTDataset, collate, read_jsonl
from finetuning.logs import CSV_NAME, PNG_NAME, TrainingLog, write_loss_curve
from finetuning.prepare_data import resolve_record_path
from finetuning.train import Trainer, resolve_device

log = logging.getLogger(__name__)


def load_base_model(path: str, device: torch.device):
    """The init checkpoint in fp32 (master weights); it must be a Base checkpoint (it has the speaker encoder)."""
    from qwen_tts.loading import load_model

    model = load_model(path, device=device, dtype=torch.float32)
    if model.speaker_encoder is None:
        raise ValueError(
            f"{path} is a {model.model_type} checkpoint; fine-tuning starts from a Base checkpoint (it has the speaker "
            f"encoder that turns ref_audio into the x-vector), e.g. Qwen3-TTS-12Hz-1.7B-Base"
        )
    return model


def reference_speaker_vector(model, records: list[dict], jsonl_dir: Path) -> torch.Tensor:
    """Mean x-vector (H,) float32 of the distinct ``ref_audio`` files of the records."""
    from qwen_tts.audio import load_audio
    from qwen_tts.speaker_encoder import speaker_embedding

    refs = sorted({str(resolve_record_path(r["ref_audio"], jsonl_dir)) for r in records if r.get("ref_audio")})
    if not refs:
        raise ValueError("no record has 'ref_audio': give a reference clip of the speaker (the same for every line)")
    vectors = []
    for ref in refs:
        audio, sr = load_audio(ref, max_seconds=None)
        vectors.append(speaker_embedding(model.speaker_encoder, audio, sr))
    log.info("speaker vector: mean x-vector of %d reference clip(s)", len(refs))
    return torch.stack(vectors).mean(dim=0)


def epoch_batches(size: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Shuffled index batches of one epoch; depends only on (seed, epoch), so a resumed run sees the same order."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(size, generator=gen).tolist()
    return [order[i : i + batch_size] for i in range(0, size, batch_size)]


class Run:
    """One fine-tuning run: model, data, trainer, logs and checkpointing."""

    def __init__(self, cfg: SFTConfig):
        from qwen_tts.tokenizer import TextTokenizer

        cfg.require_paths()
        self.cfg = cfg
        self.speaker = normalize_speaker_name(cfg.speaker_name)
        self.out = Path(cfg.output_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.seed)
        self.device = resolve_device(cfg.device)
        self.model = load_base_model(cfg.init_model, self.device)
        self.export_dtype = weights_dtype(cfg.init_model)
        records = read_jsonl(cfg.train_jsonl)
        tokenizer = TextTokenizer.from_pretrained(cfg.init_model)
        self.dataset = SFTDataset(records, tokenizer, self.model.config)
        if cfg.resume_from:
            state = load_trainer_state(cfg.resume_from)
            self.trainer = Trainer(cfg, self.model, state["speaker_vector"], self.device)
            self.trainer.load_state(state, load_talker_weights(cfg.resume_from), cfg.speaker_slot)
        else:
            vector = reference_speaker_vector(self.model, records, Path(cfg.train_jsonl).parent)
            self.trainer = Trainer(cfg, self.model, vector, self.device)
        self.log = TrainingLog(self.out, self.trainer.position.step, cfg.tensorboard)
        self.last_metrics: dict[str, float] = {}
        self.last_checkpoint: Path | None = None
        self._saved_step = -1
        self._clock = time.perf_counter()

    def fit(self) -> Path:
        """Train to the end (epochs or max_steps) and return the last checkpoint folder."""
        cfg, pos = self.cfg, self.trainer.position
        log.info("training %d examples as speaker %r on %s from step %d", len(self.dataset), self.speaker,
                 self.device, pos.step)  # fmt: skip
        while pos.epoch < cfg.num_epochs and not self._done():
            self._run_epoch()
        if self._saved_step != pos.step:
            self._save()
        self.log.close()
        return self.last_checkpoint

    def _run_epoch(self) -> None:
        """Train from the current position to the end of its epoch (or max_steps)."""
        pos = self.trainer.position
        batches = epoch_batches(len(self.dataset), self.cfg.batch_size, self.cfg.seed, pos.epoch)
        while pos.batch < len(batches) and not self._done():
            metrics = self.trainer.train_step(collate([self.dataset[i] for i in batches[pos.batch]]))
            pos.batch += 1
            last = pos.batch == len(batches)
            epoch = pos.epoch  # the epoch this step trained on (the position moves on below at the epoch's end)
            if last:
                if self.trainer.pending:  # the last, partial accumulation of the epoch
                    metrics.update(self.trainer.optimizer_step())
                pos.epoch, pos.batch = pos.epoch + 1, 0
            if metrics["stepped"]:
                self._after_step(metrics, epoch, epoch_end=last)
            if last:
                return

    def _done(self) -> bool:
        return bool(self.cfg.max_steps) and self.trainer.position.step >= self.cfg.max_steps

    def _after_step(self, metrics: dict[str, float], epoch: int, epoch_end: bool) -> None:
        pos, now = self.trainer.position, time.perf_counter()
        row = {"step": pos.step, "epoch": epoch, "loss": metrics["mean_loss"],
               "talker_loss": metrics["mean_talker_loss"], "sub_talker_loss": metrics["mean_sub_talker_loss"],
               "grad_norm": metrics["grad_norm"], "lr": metrics["lr"], "samples": metrics["samples"],
               "seconds": now - self._clock}  # fmt: skip
        self._clock = now
        self.last_metrics = row
        if pos.step % self.cfg.log_every_steps == 0:
            self.log.add(row)
            log.info("step %d epoch %d loss %.4f (talker %.4f, sub-talker %.4f) grad-norm %.3f", pos.step, epoch,
                     row["loss"], row["talker_loss"], row["sub_talker_loss"], row["grad_norm"])  # fmt: skip
        every = self.cfg.save_every_steps
        if (every and pos.step % every == 0) or (epoch_end and not every) or self._done():
            self._save()

    def _save(self) -> None:
        pos = self.trainer.position
        meta = {"step": pos.step, "epoch": pos.epoch, "batch": pos.batch, "speaker_name": self.speaker,
                "speaker_slot": self.cfg.speaker_slot, "metrics": self.last_metrics, "config": self.cfg.to_dict(),
                "init_model": str(self.cfg.init_model)}  # fmt: skip
        folder = save_checkpoint(
            checkpoint_dir(self.out, pos.step), model=self.model, init_dir=self.cfg.init_model,
            speaker_name=self.speaker, speaker_vector=self.trainer.speaker_vector, slot=self.cfg.speaker_slot,
            dtype=self.export_dtype, meta=meta,
            trainer_state=self.trainer.state(self.cfg.speaker_slot) if self.cfg.save_optimizer else None,
        )  # fmt: skip
        png = write_loss_curve(self.log.rows, self.out / PNG_NAME)
        if png is not None:
            shutil.copy2(png, folder / PNG_NAME)
        shutil.copy2(self.out / CSV_NAME, folder / CSV_NAME)
        self.last_checkpoint = folder
        self._saved_step = pos.step


def run(cfg: SFTConfig) -> Path:
    """Log the resolved config, train, return the last checkpoint folder."""
    cfg.log_resolved()
    return Run(cfg).fit()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[{asctime}] [{levelname:<7}] {name}: {message}", style="{")
    try:
        cfg = SFTConfig.from_argv(argv)
        folder = run(cfg)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    log.info("done: %s (load it with QwenTTS.from_pretrained and speaker=%r)", folder, cfg.speaker_name.lower())
    return 0


if __name__ == "__main__":
    sys.exit(main())
