"""Load and save ``Qwen3TTSModel`` weights: local folder or Hugging Face hub id, strict key and shape checks.

The module tree is built on the meta device (no memory, no init cost), the safetensors tensors are checked against it
(missing, unexpected and mismatched keys are all reported in one error) and assigned in place, then moved to the
requested device and dtype.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from qwen_tts.checkpoint import (
    REDOWNLOAD,
    CheckpointError,
    check_safetensors,
    check_state_dict,
    load_safetensors,
    looks_local,
    one_line,
    read_json,
)
from qwen_tts.config import Qwen3TTSConfig
from qwen_tts.model import Qwen3TTSModel

log = logging.getLogger(__name__)

WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
HUB_PATTERNS = ["*.json", "*.txt", "*.safetensors", "speech_tokenizer/*"]
TINY_HINT = "or write a tiny test checkpoint with `python -m qwen_tts.tiny DIR --type custom_voice`"


def resolve_checkpoint(name_or_path: str | Path, revision: str | None = None) -> Path:
    """A local checkpoint folder for ``name_or_path`` (downloaded with huggingface_hub when it is a hub id)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    name = str(name_or_path)
    if path.exists():
        raise CheckpointError(f"{name} is a file, not a checkpoint folder; pass the folder that holds config.json")
    if isinstance(name_or_path, Path) or looks_local(name):
        looked = "" if path.is_absolute() else f" (looked for {path.absolute()})"
        raise CheckpointError(
            f"checkpoint folder {name} does not exist{looked}; pass a folder that holds "
            f"config.json, download one with `hf download Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice --local-dir DIR`, "
            f"{TINY_HINT}"
        )
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=name, revision=revision, allow_patterns=HUB_PATTERNS))
    except Exception as exc:  # offline, unknown repo, gated, proxy...: the fix is the same
        raise CheckpointError(
            f"{name!r} is not a local folder ({path.absolute()} does not exist) and could not be fetched from the "
            f"Hugging Face hub ({type(exc).__name__}: {one_line(exc)}); on a machine with internet run "
            f"`hf download {name} --local-dir DIR`, copy DIR here and pass that local folder instead of the hub id"
        ) from exc


def load_config(folder: str | Path) -> Qwen3TTSConfig:
    """The checkpoint's config.json, parsed and validated (CheckpointError naming the file otherwise)."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise CheckpointError(
            f"{folder} is not a Qwen3-TTS checkpoint folder (it has no config.json); pass the folder that "
            f"`hf download Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice --local-dir DIR` wrote, {TINY_HINT}"
        )
    if "talker_config" not in read_json(path):
        raise CheckpointError(
            f"{folder} is not a Qwen3-TTS checkpoint folder (its config.json has no talker_config; a codec's "
            f"speech_tokenizer/ folder or another model?); pass the folder that holds the whole checkpoint"
        )
    return Qwen3TTSConfig.from_json(path)


def _shards(folder: Path) -> list[Path]:
    """The weight files of a checkpoint: model.safetensors, or the shards its index names."""
    single, index = folder / WEIGHTS, folder / WEIGHTS_INDEX
    if single.exists():
        return [single]
    if index.is_file():
        weight_map = read_json(index, "the weights index").get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{index} has no weight_map; {REDOWNLOAD}")
        return [folder / shard for shard in sorted(set(weight_map.values()))]
    raise CheckpointError(f"{folder} has neither {WEIGHTS} nor {WEIGHTS_INDEX}; {REDOWNLOAD}")


def read_safetensors(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of model.safetensors (or its sharded index) on CPU."""
    tensors: dict[str, torch.Tensor] = {}
    for shard in _shards(folder):
        tensors.update(load_safetensors(shard))
    return tensors


def verify_checkpoint(folder: str | Path) -> Path:
    """Check, without loading any tensor, that ``folder`` is a complete checkpoint: config.json valid, weights and
    the codec's weights not truncated, tokenizer files present. Raises CheckpointError; cheap enough to run before
    any model work (a 1.7B folder reads a few headers, not gigabytes)."""
    from qwen_tts.codec.codec import verify_codec
    from qwen_tts.tokenizer import check_tokenizer_files

    folder = Path(folder)
    load_config(folder)
    for shard in _shards(folder):
        check_safetensors(shard)
    check_tokenizer_files(folder)
    verify_codec(folder)
    return folder


def build_empty(config: Qwen3TTSConfig) -> Qwen3TTSModel:
    """The module tree on the meta device (no memory used until weights are assigned)."""
    with torch.device("meta"):
        return Qwen3TTSModel(config)


def load_model(
    name_or_path: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    revision: str | None = None,
) -> Qwen3TTSModel:
    """Load a checkpoint folder or hub id into a ``Qwen3TTSModel`` in eval mode on ``device`` in ``dtype``."""
    folder = resolve_checkpoint(name_or_path, revision)
    config = load_config(folder)
    model = build_empty(config)
    tensors = read_safetensors(folder)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    check_state_dict(expected, tensors, str(folder / WEIGHTS))
    device = torch.device(device)
    converted = {k: (v.to(dtype) if v.is_floating_point() else v).to(device) for k, v in tensors.items()}
    model.load_state_dict(converted, strict=True, assign=True)
    log.info(
        "loaded %s checkpoint %s (%d tensors) on %s as %s", config.tts_model_type, folder, len(converted), device, dtype
    )
    return model.eval()


def save_model(model: Qwen3TTSModel, folder: str | Path) -> Path:
    """Write config.json and model.safetensors (sorted keys, contiguous CPU tensors) into ``folder``."""
    from safetensors.torch import save_file

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    # clone: the fast path may have made weights views of one fused tensor, which safetensors refuses to save
    state = {k: v.detach().to("cpu").clone() for k, v in sorted(model.state_dict().items())}
    save_file(state, out / WEIGHTS, metadata={"format": "pt"})
    model.config.to_json(out / "config.json")
    return out
