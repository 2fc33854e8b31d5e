"""Masters: the rendered track as a WAV (at the engine's rate, 24 kHz) under the outputs folder, plus a JSON sidecar; FLAC/Opus export.

File names are made of the UTC time, the job id (only if it is a plain id) and random hex: user text never becomes
a path. The WAV is written chunk by chunk to a `.part` file as audio is produced (each chunk travels forward once)
and renamed into place when the render finishes, after its sidecar is written (a master never lies without its
sidecar); every file is fsynced before its rename, so a crash leaves the old state or the new, never a torn file. A
cancelled or failed render leaves nothing behind; what a killed process leaves (`.part`, `.tmp`) `sweep_partial`
removes at the next start. All of this is blocking file I/O: it runs on the compute thread, never on the event loop.
"""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

_SAFE_JOB = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
EXPORTS = {"wav": ("WAV", "PCM_16", ".wav"), "flac": ("FLAC", "PCM_16", ".flac"), "opus": ("OGG", "OPUS", ".ogg")}


def master_stem(job_id: object | None, now: datetime | None = None) -> tuple[str, str]:
    """(day folder, file stem) for a new master, e.g. ("2026-11-24", "083015-job42-1f2e3d4c5b6a")."""
    now = now or datetime.now(timezone.utc)
    job = str(job_id) if job_id is not None and _SAFE_JOB.match(str(job_id)) else None
    parts = [now.strftime("%H%M%S"), f"job{job}" if job else None, uuid.uuid4().hex[:12]]
    return now.strftime("%Y-%m-%d"), "-".join(p for p in parts if p)


PARTIAL_SUFFIXES = (
    ".part",
    ".tmp",
)  # what an interrupted write leaves (`.x.wav.part`, `.x.json.1a2b.tmp`, `x.tmp.wav`)


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX; a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(data, indent=1, ensure_ascii=False))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def is_partial(path: Path) -> bool:
    name = path.name
    return name.endswith(PARTIAL_SUFFIXES) or ".tmp." in name


def sweep_partial(folder: Path) -> int:
    """Delete what interrupted writes left under `folder` (call at start, before any render runs); returns how many
    files went."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    for path in folder.rglob("*"):
        if path.is_file() and is_partial(path):
            try:
                path.unlink()
                removed += 1
            except OSError as exc:
                log.warning("could not remove the partial file %s: %s", path, exc)
    return removed


class MasterWriter:
    """Streams float32 chunks into `<outputs>/<day>/<stem>.wav.part`; `finish` renames it and writes the sidecar."""

    def __init__(self, outputs_dir: Path, job_id: object | None, sample_rate: int) -> None:
        import soundfile as sf

        day, stem = master_stem(job_id)
        folder = Path(outputs_dir) / day
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{stem}.wav"
        self.sidecar_path = folder / f"{stem}.json"
        self._part = folder / f".{stem}.wav.part"
        self._file = sf.SoundFile(str(self._part), "w", sample_rate, 1, subtype="PCM_16", format="WAV")
        self.samples = 0

    def write(self, audio: np.ndarray) -> None:
        """Append (n,) float32 samples in [-1, 1] (the caller clips, so the stream and the master agree)."""
        if len(audio):
            self._file.write(audio)
            self.samples += len(audio)

    def finish(self, sidecar: dict[str, Any]) -> Path:
        """Publish the master: its audio on disk, then its sidecar, then the rename that makes it a master (so a
        failed sidecar leaves only the `.part`, which `abort` removes)."""
        self._file.close()
        fsync_file(self._part)
        write_json_atomic(self.sidecar_path, {**sidecar, "master": self.path.name, "samples": self.samples})
        try:
            os.replace(self._part, self.path)
        except BaseException:
            self.sidecar_path.unlink(missing_ok=True)
            raise
        fsync_dir(self.path.parent)
        return self.path

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._part.unlink(missing_ok=True)


def export_master(wav_path: Path, fmt: str, out: Path | None = None) -> Path:
    """Encode a master as `fmt` (wav, flac or opus) at `out` (default: next to it); returns the written path.

    Opus is resampled by libsndfile's encoder as needed (Ogg Opus carries 48 kHz internally).
    """
    import soundfile as sf

    if fmt not in EXPORTS:
        raise ValueError(f"export format must be one of {sorted(EXPORTS)}, got {fmt!r}")
    container, subtype, suffix = EXPORTS[fmt]
    out = Path(out) if out is not None else Path(wav_path).with_suffix(suffix)
    audio, sr = sf.read(str(wav_path), dtype="float32")
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
    sf.write(str(tmp), audio, sr, format=container, subtype=subtype)
    fsync_file(tmp)
    os.replace(tmp, out)
    return out


def format_for_suffix(path: Path) -> str:
    """wav | flac | opus for an output file name; ValueError naming the allowed suffixes otherwise."""
    suffix = Path(path).suffix.lower()
    for fmt, (_, _, ext) in EXPORTS.items():
        if suffix == ext or (fmt == "opus" and suffix == ".opus"):
            return fmt
    raise ValueError(f"cannot write {path}: use a .wav, .flac or .ogg (Opus) file name")
