"""Save a fine-tuned model as a CustomVoice checkpoint in the Hugging Face layout, and read back what resume needs.

A checkpoint folder holds:
* every file of the init checkpoint except its weights and config.json (text tokenizer, generation_config.json,
  preprocessor_config.json, ``speech_tokenizer/``);
* ``config.json`` with ``tts_model_type: custom_voice``, ``talker_config.spk_id = {name: slot}`` and
  ``spk_is_dialect = {name: false}``;
* ``model.safetensors``: the state dict without ``speaker_encoder.*``, ``talker.model.codec_embedding.weight[slot]`` =
  the speaker's x-vector, in the init checkpoint's dtype (so ``qwen_tts`` loads it strictly);
* ``meta_{step:06d}.json`` (step, epoch, config, last losses) and, for resume, ``trainer_state.pt`` (optimizer, step,
  data position, speaker vector) plus ``master_weights.safetensors`` (fp32 talker weights) when the saved dtype is
  narrower than fp32.
The folder is written under a temporary name and renamed at the end, so a crash never leaves half a checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import torch

from qwen_tts.config import Qwen3TTSConfig
from qwen_tts.loading import WEIGHTS, WEIGHTS_INDEX

log = logging.getLogger(__name__)

TRAINER_STATE = "trainer_state.pt"
MASTER_WEIGHTS = "master_weights.safetensors"
_SPECIAL_IDS = ("codec_eos_token_id", "codec_think_id", "codec_nothink_id", "codec_think_bos_id", "codec_think_eos_id",
                "codec_pad_id", "codec_bos_id")  # fmt: skip
_NOT_COPIED = {WEIGHTS, WEIGHTS_INDEX, "config.json", TRAINER_STATE, MASTER_WEIGHTS}


def checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    return Path(output_dir) / f"checkpoint-step-{step:06d}"


def check_speaker_slot(config: Qwen3TTSConfig, slot: int) -> None:
    """The slot must be a special row (>= codebook size, < vocab) that no special/language id already uses."""
    tc = config.talker_config
    taken = {getattr(tc, k): k for k in _SPECIAL_IDS}
    taken.update({v: f"language {k}" for k, v in tc.codec_language_id.items()})
    if not tc.codebook_size <= slot < tc.vocab_size:
        raise ValueError(f"speaker_slot={slot} must be in [{tc.codebook_size}, {tc.vocab_size}) (special rows)")
    if slot in taken:
        raise ValueError(f"speaker_slot={slot} is already the codec id of {taken[slot]}; pick a free row (3000)")


def custom_voice_config(config: Qwen3TTSConfig, speaker_name: str, slot: int) -> Qwen3TTSConfig:
    """A copy of ``config`` turned into a CustomVoice config with one speaker ``speaker_name`` at ``slot``."""
    check_speaker_slot(config, slot)
    data = config.to_dict()
    data["tts_model_type"] = "custom_voice"
    data["talker_config"]["spk_id"] = {speaker_name: slot}
    data["talker_config"]["spk_is_dialect"] = {speaker_name: False}
    return Qwen3TTSConfig.from_dict(data)


def normalize_speaker_name(name: str) -> str:
    """Speaker names are looked up lower-case (as the official package does); reject empty or spaced names."""
    clean = name.strip().lower()
    if not clean or any(ch.isspace() for ch in clean):
        raise ValueError(f"speaker name {name!r} must be one word (letters, digits, _ or -), e.g. 'narrator_anna'")
    return clean


def _copy_support_files(init_dir: Path, dest: Path) -> None:
    for item in init_dir.iterdir():
        if item.name in _NOT_COPIED or item.name.startswith("meta_") or item.name.endswith(".safetensors"):
            continue
        if item.is_dir():
            shutil.copytree(item, dest / item.name)
        else:
            shutil.copy2(item, dest / item.name)


def export_state_dict(
    model: torch.nn.Module, speaker_vector: torch.Tensor, slot: int, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """State dict minus ``speaker_encoder.*``, CPU ``dtype`` copies, with the x-vector written at codec row ``slot``."""
    state = {
        k: v.detach().to("cpu", dtype=dtype if v.is_floating_point() else v.dtype).clone()
        for k, v in sorted(model.state_dict().items())
        if not k.startswith("speaker_encoder.")
    }
    state["talker.model.codec_embedding.weight"][slot] = speaker_vector.detach().to("cpu", dtype)
    return state


def save_checkpoint(
    folder: str | Path,
    *,
    model: torch.nn.Module,
    init_dir: str | Path,
    speaker_name: str,
    speaker_vector: torch.Tensor,
    slot: int,
    dtype: torch.dtype,
    meta: dict[str, Any],
    trainer_state: dict[str, Any] | None = None,
) -> Path:
    """Write the checkpoint folder (see the module docstring) and return its path."""
    from safetensors.torch import save_file

    final = Path(folder)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _copy_support_files(Path(init_dir), tmp)
    custom_voice_config(model.config, speaker_name, slot).to_json(tmp / "config.json")
    save_file(export_state_dict(model, speaker_vector, slot, dtype), tmp / WEIGHTS, metadata={"format": "pt"})
    step = int(meta["step"])
    (tmp / f"meta_{step:06d}.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if trainer_state is not None:
        torch.save(trainer_state, tmp / TRAINER_STATE)
        if dtype != torch.float32:  # resume must continue from the fp32 weights, not the rounded export
            master = {k: v.detach().float().cpu().clone() for k, v in model.talker.state_dict().items()}
            save_file(master, tmp / MASTER_WEIGHTS)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    log.info("saved checkpoint %s (speaker %r at codec row %d, step %d)", final, speaker_name, slot, step)
    return final


def load_trainer_state(folder: str | Path) -> dict[str, Any]:
    """``trainer_state.pt`` of a checkpoint folder (ValueError if the folder was saved without optimizer state)."""
    path = Path(folder) / TRAINER_STATE
    if not path.is_file():
        raise ValueError(f"{folder} has no {TRAINER_STATE}: it was saved with --no-save-optimizer and cannot resume")
    # weights_only: a checkpoint folder may come from anyone; unpickling arbitrary objects would run their code. The
    # state holds only tensors, numbers, strings, lists, tuples and dicts, which the safe loader reads.
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(
            f"{path} holds objects other than tensors and plain values, so it is not loaded (it could run code); "
            "resume only from checkpoints written by finetuning/sft_12hz.py"
        ) from exc


def load_talker_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    """The talker weights to resume from: fp32 master weights if saved, else those of model.safetensors."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if (folder / MASTER_WEIGHTS).is_file():
        return load_file(folder / MASTER_WEIGHTS)
    prefix = "talker."
    return {k[len(prefix) :]: v for k, v in load_file(folder / WEIGHTS).items() if k.startswith(prefix)}


def weights_dtype(folder: str | Path) -> torch.dtype:
    """dtype of ``talker.codec_head.weight`` in a checkpoint folder (the dtype its export keeps)."""
    from safetensors import safe_open

    folder = Path(folder)
    if not (folder / WEIGHTS).is_file():
        return torch.bfloat16  # sharded releases are bf16
    with safe_open(str(folder / WEIGHTS), framework="pt") as f:
        return f.get_tensor("talker.codec_head.weight").dtype
