"""Checks the command line runs before any model work: each failure is one `InputError` sentence naming the file,
option or variable and what to do (exit code 2)."""

from __future__ import annotations

import os
from pathlib import Path

from bot.errors import UserError
from bot.services.clips import Clip, ClipLimits, decode_reference
from bot.settings import Settings


class InputError(ValueError):
    """Bad input on the command line; the message names it and says what to do."""


def writable_file(path: Path, what: str) -> None:
    """`path` can be created or overwritten: its folder exists and a probe file can be created and removed there."""
    folder = path.parent
    if not folder.is_dir():
        raise InputError(f"the folder of {what} does not exist: {folder}; create it or choose another path")
    if path.is_dir():
        raise InputError(f"{what} {path} is a folder; give a file name such as {path / 'out.wav'}")
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"{what} {path} exists and cannot be overwritten; choose another file or fix its permissions")
    writable_folder(folder, f"the folder of {what}")


def writable_folder(folder: Path, what: str) -> None:
    """`folder` exists (created if missing) and accepts a new file (a probe, created and removed at once)."""
    probe = folder / f".narrator-write-probe-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.touch(exist_ok=False)
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise InputError(f"cannot write to {what} ({folder}): {reason}; choose a folder you can write to") from None


def script_length(script: str, settings: Settings) -> None:
    if len(script) > settings.max_script_chars:
        raise InputError(
            f"the script is {len(script)} characters long; the limit is {settings.max_script_chars} "
            f"(NARRATOR_MAX_SCRIPT_CHARS): shorten it or raise the limit"
        )


def reference_clip(path: Path, transcript: str | None, settings: Settings, option: str) -> Clip:
    """The checked clip (the same intake as a Discord upload: format, channels, rate, length, silence)."""
    if not transcript or not transcript.strip():
        raise InputError(f"{option} needs --transcript: the exact words spoken in {path}")
    if not path.is_file():
        raise InputError(f"{option} {path} does not exist or is not a file; give a WAV, FLAC or Ogg recording")
    size = path.stat().st_size
    if size > settings.max_upload_bytes:
        raise InputError(
            f"{option} {path} is {size / 1e6:.1f} MB; the limit is {settings.max_upload_bytes / 1e6:.1f} MB "
            f"(NARRATOR_MAX_UPLOAD_BYTES): trim it to at most {settings.max_reference_seconds:g} s"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {option} {path}: {exc.strerror or exc}") from None
    try:
        return decode_reference(data, path.name, ClipLimits(max_seconds=settings.max_reference_seconds))
    except UserError as exc:  # the Discord sentence names the file by its name; add the option and the full path
        raise InputError(f"{option} {path}: {str(exc).replace('`', '')}") from None


def device(settings: Settings) -> str:
    """NARRATOR_DEVICE resolved on this machine; EngineError (caught by bot.cli) when it has no such device."""
    from bot.engine.local import resolve_device

    return resolve_device(settings.device)
