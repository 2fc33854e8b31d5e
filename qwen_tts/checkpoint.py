"""Checkpoint files read with checks: one error type (``CheckpointError``) whose message names the file and the fix.

Everything that reads a file of a checkpoint folder (config.json, the safetensors weights, the tokenizer files, the
codec's speech_tokenizer/) goes through here, so a truncated download, a hand-edited JSON file or a folder that is
not a checkpoint gives one line instead of a SafetensorError, a JSONDecodeError without a file name or a misleading
ImportError from transformers. Torch is imported only when tensors are actually loaded.
"""

from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

REDOWNLOAD = (
    "download the checkpoint again (`hf download REPO_ID --local-dir DIR`, see the README's Models and hardware)"
)
_HEADER_LIMIT = 100 * 1024 * 1024  # a safetensors JSON header larger than this is a corrupt file, not a real header
_LISTED = 8  # how many key names an error lists before "... and N more"
# A hub repo id is exactly owner/name of letters, digits, '-', '_' and '.' (huggingface_hub's own rule, without '--').
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


class CheckpointError(ValueError):
    """A checkpoint folder, file or hub id that cannot be loaded; the one-line message says what is wrong and what
    to do. A ValueError, so callers that treat bad input as ValueError keep working."""


def looks_local(name: str) -> bool:
    """Whether ``name`` means a folder on this machine rather than a hub id (whether or not the folder exists).

    A hub id is exactly ``owner/name``. Anything else is a path: it starts with '.', '/' or '~', uses a backslash or
    more (or fewer) than one '/', has characters a repo id cannot have, or its parent folder exists here (so
    ``ckpt/custom_voice`` next to an existing ``ckpt/`` is a missing local folder, not a repo named custom_voice).
    """
    if name.startswith((".", "/", "~")) or "\\" in name or (os.sep != "/" and os.sep in name):
        return True
    if not _HUB_ID.match(name) or ".." in name or "--" in name:
        return True
    return Path(name).parent.is_dir() and str(Path(name).parent) not in ("", ".")


def one_line(exc: BaseException, limit: int = 200) -> str:
    """An exception's text on one line (library messages often span several), shortened to ``limit`` characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_json(path: Path, what: str = "") -> dict[str, Any]:
    """The JSON object in ``path``; CheckpointError naming the file when it is missing, unreadable or not an object."""
    label = f"{path}{f' ({what})' if what else ''}"
    if not path.is_file():
        raise CheckpointError(f"{label} is missing; {REDOWNLOAD}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(
            f"{label} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); fix the file or {REDOWNLOAD}"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"cannot read {label} ({one_line(exc)}); check its permissions or {REDOWNLOAD}") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{label} holds a JSON {type(data).__name__}, not an object; {REDOWNLOAD}")
    return data


def check_safetensors(path: Path) -> None:
    """Check a safetensors file without loading it: present, header readable, every tensor's bytes present.

    The format is an 8-byte little-endian header length, a JSON header with each tensor's byte range, then the data;
    a file cut short by an interrupted download fails the last check with the sizes in the message.
    """
    if not path.is_file():
        raise CheckpointError(f"{path} is missing; {REDOWNLOAD}")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): the download did not finish; {REDOWNLOAD}")
    try:
        with path.open("rb") as f:
            head = f.read(8)
            length = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
            if not 0 < length <= min(_HEADER_LIMIT, size - 8):
                raise CheckpointError(f"{path} is not a safetensors file or is cut short ({size} bytes); {REDOWNLOAD}")
            header = json.loads(f.read(length))
    except OSError as exc:
        raise CheckpointError(f"cannot read {path} ({one_line(exc)}); check its permissions or {REDOWNLOAD}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} has a damaged header (not a safetensors file?); {REDOWNLOAD}") from exc
    try:
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except (AttributeError, KeyError, TypeError, IndexError, ValueError) as exc:
        raise CheckpointError(f"{path} has a damaged header (not a safetensors file?); {REDOWNLOAD}") from exc
    needed = 8 + length + max(ends, default=0)
    if size < needed:
        raise CheckpointError(
            f"{path} is truncated ({size} of {needed} bytes): the download did not finish; {REDOWNLOAD}"
        )


def load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of one safetensors file on CPU, checked first (see ``check_safetensors``)."""
    from safetensors.torch import load_file

    check_safetensors(path)
    try:
        return load_file(str(path))
    except Exception as exc:  # SafetensorError and friends: whatever the cause, the file is unusable as it is
        raise CheckpointError(f"cannot load {path} ({one_line(exc)}); {REDOWNLOAD}") from exc


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
