"""Load and save ``Qwen3TTSModel`` weights: local folder or Hugging Face hub id, strict key and shape checks.

The module tree is built on the meta device (no memory, no init cost), the safetensors tensors are checked against it
(missing, unexpected and mismatched keys are all reported in one error) and assigned in place, then moved to the
requested device and dtype.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from qwen_tts.config import Qwen3TTSConfig
from qwen_tts.model import Qwen3TTSModel

log = logging.getLogger(__name__)

WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
HUB_PATTERNS = ["*.json", "*.txt", "*.safetensors", "speech_tokenizer/*"]
_LISTED = 8  # how many key names an error lists before "... and N more"


class CheckpointError(ValueError):
    """A checkpoint folder or hub id that cannot be loaded; the message says what is wrong and how to fix it."""


def _looks_local(name: str) -> bool:
    return name.startswith((".", "/", "~")) or "\\" in name or name.count("/") != 1


def resolve_checkpoint(name_or_path: str | Path, revision: str | None = None) -> Path:
    """A local checkpoint folder for ``name_or_path`` (downloaded with huggingface_hub when it is a hub id)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    name = str(name_or_path)
    if _looks_local(name):
        raise CheckpointError(f"checkpoint folder {name!r} does not exist; pass a folder that holds config.json")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=name, revision=revision, allow_patterns=HUB_PATTERNS))
    except Exception as exc:  # offline, unknown repo, gated, proxy...: the fix is the same
        raise CheckpointError(
            f"could not fetch {name!r} from the Hugging Face hub ({type(exc).__name__}: {exc}). On a machine with "
            f"internet run `huggingface-cli download {name} --local-dir DIR`, copy DIR here and pass that local "
            f"folder instead of the hub id"
        ) from exc


def load_config(folder: str | Path) -> Qwen3TTSConfig:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: {folder} is not a Qwen3-TTS checkpoint folder")
    return Qwen3TTSConfig.from_json(path)


def read_safetensors(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of model.safetensors (or its sharded index) on CPU."""
    from safetensors.torch import load_file

    single, index = folder / WEIGHTS, folder / WEIGHTS_INDEX
    if single.is_file():
        return load_file(single)
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        tensors: dict[str, torch.Tensor] = {}
        for shard in shards:
            tensors.update(load_file(folder / shard))
        return tensors
    raise CheckpointError(f"{folder} has neither {WEIGHTS} nor {WEIGHTS_INDEX}")


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_LISTED])
    return shown + (f" ... and {len(keys) - _LISTED} more" if len(keys) > _LISTED else "")


def check_state_dict(expected: dict[str, torch.Size], found: dict[str, torch.Tensor], where: str) -> None:
    """Raise CheckpointError naming every missing, unexpected and shape-mismatched key."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    mismatched = sorted(
        f"{k} (file {tuple(found[k].shape)}, model {tuple(expected[k])})"
        for k in set(expected) & set(found)
        if tuple(found[k].shape) != tuple(expected[k])
    )
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches: {_listing(mismatched)}")
    if problems:
        raise CheckpointError(
            f"{where} does not match its config.json ({'; '.join(problems)}). Check that config.json belongs to these "
            f"weights (tts_model_type, sizes) and that the file is complete"
        )


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
