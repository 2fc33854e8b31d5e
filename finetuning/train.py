"""The training loop, built from ``Trainer.train_step(batch) -> dict[str, float]``.

``Trainer`` owns the talker's optimizer (AdamW over every talker weight: a full fine-tune, as the official recipe;
the speaker encoder is only used to compute the fixed x-vector), gradient accumulation, clipping and mixed precision
(bf16 autocast on CUDA with fp32 master weights, plain fp32 on CPU). ``Trainer.state()`` / ``load_state()`` carry
everything resume needs, so a resumed run continues at the same optimizer step and data position.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import torch

from finetuning.config import SFTConfig
from finetuning.loss import compute_loss

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but CUDA is not available; use --device cpu")
    return device


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast for "bf16" (any device; slow on CPU, used to test the mixed-precision path) and for "auto" on
    CUDA; None (plain fp32) for "fp32" and for "auto" on CPU. Master weights and optimizer state stay fp32."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def trainable_parameters(talker: torch.nn.Module, train_text_embedding: bool) -> list[torch.nn.Parameter]:
    """Every talker weight (a full fine-tune), optionally without the text embedding (which is then frozen)."""
    talker.model.text_embedding.weight.requires_grad_(train_text_embedding)
    return [p for p in talker.parameters() if p.requires_grad]


@dataclass
class Position:
    """Where training stands: optimizer steps done, current epoch and the next batch index inside it."""

    step: int = 0
    epoch: int = 0
    batch: int = 0


class Trainer:
    """Full fine-tune of ``model.talker`` with AdamW, gradient accumulation, clipping and autocast."""

    def __init__(self, cfg: SFTConfig, model: torch.nn.Module, speaker_vector: torch.Tensor, device: torch.device):
        self.cfg = cfg
        self.model = model
        self.talker = model.talker
        self.device = device
        self.speaker_vector = speaker_vector.detach().float().to(device)
        self.autocast = autocast_dtype(cfg.precision, device)
        self.params = trainable_parameters(self.talker, cfg.train_text_embedding)
        self.optimizer = torch.optim.AdamW(
            self.params, lr=cfg.lr, weight_decay=cfg.weight_decay,
            betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps,
        )  # fmt: skip
        self.position = Position()
        self.pending = 0  # micro-batches accumulated since the last optimizer step
        self._sums = {"loss": 0.0, "talker_loss": 0.0, "sub_talker_loss": 0.0, "samples": 0.0}

    def _autocast(self):
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One micro-batch: forward, backward (loss / grad_accum_steps), and an optimizer step every
        ``grad_accum_steps`` micro-batches. Returns this micro-batch's losses plus ``stepped`` (1.0 if the optimizer
        stepped) and, when it did, ``grad_norm``, ``lr`` and the mean losses over the accumulated micro-batches."""
        self.talker.train()
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with self._autocast():
            out = compute_loss(self.talker, batch, self.speaker_vector, self.cfg.sub_talker_loss_weight)
        (out.loss / self.cfg.grad_accum_steps).backward()
        metrics = {"loss": out.loss.item(), "talker_loss": out.talker_loss.item(),
                   "sub_talker_loss": out.sub_talker_loss.item()}  # fmt: skip
        for k, v in metrics.items():
            self._sums[k] += v
        self._sums["samples"] += batch["labels"].shape[0]
        self.pending += 1
        metrics["stepped"] = 0.0
        if self.pending >= self.cfg.grad_accum_steps:
            metrics.update(self.optimizer_step())
        return metrics

    def optimizer_step(self) -> dict[str, float]:
        """Clip, step, zero the gradients; returns the means over the accumulated micro-batches (no-op if none)."""
        if self.pending == 0:
            return {"stepped": 0.0}
        if self.cfg.max_grad_norm > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.max_grad_norm)
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in self.params if p.grad is not None])
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.position.step += 1
        means = {f"mean_{k}": v / self.pending for k, v in self._sums.items() if k != "samples"}
        means.update(stepped=1.0, grad_norm=float(norm), lr=self.optimizer.param_groups[0]["lr"],
                     samples=self._sums["samples"], step=float(self.position.step))  # fmt: skip
        self.pending = 0
        self._sums = dict.fromkeys(self._sums, 0.0)
        return means

    # -- resume ----------------------------------------------------------------------------------------------------
    def state(self, slot: int) -> dict:
        """Everything a resumed run needs (the trained value of the speaker's codec row is kept: export overwrites
        it with the x-vector)."""
        assert self.pending == 0, "save only right after an optimizer step"
        return {
            "position": vars(self.position).copy(),
            "optimizer": self.optimizer.state_dict(),
            "speaker_vector": self.speaker_vector.cpu(),
            "codec_row": self.talker.model.codec_embedding.weight[slot].detach().float().cpu().clone(),
            "torch_rng": torch.get_rng_state(),
        }

    def load_state(self, state: dict, talker_weights: dict[str, torch.Tensor], slot: int) -> None:
        self.talker.load_state_dict({k: v.to(self.device) for k, v in talker_weights.items()}, strict=True)
        with torch.no_grad():
            self.talker.model.codec_embedding.weight[slot] = state["codec_row"].to(self.device)
        self.optimizer.load_state_dict(state["optimizer"])
        self.position = Position(**state["position"])
        self.speaker_vector = state["speaker_vector"].to(self.device)
        torch.set_rng_state(state["torch_rng"])
        log.info("resumed at step %d (epoch %d, batch %d)", self.position.step, self.position.epoch,
                 self.position.batch)  # fmt: skip
