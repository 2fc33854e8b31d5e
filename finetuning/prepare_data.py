"""Add ``audio_codes`` to a fine-tuning JSONL with our codec encoder.

    python -m finetuning.prepare_data --codec BASE_DIR --input-jsonl raw.jsonl --output-jsonl train.jsonl \\
        [--batch-size 32 --min-seconds 0.5 --max-seconds 30 --device auto]

Each input line has ``audio`` (path), ``text`` (transcript) and ``ref_audio`` (path of a clip of the speaker; use the
same clip on every line). Relative paths are taken as given, else relative to the JSONL's folder. Every line is
checked first (valid JSON, files exist and decode, durations within bounds, non-empty transcript) and ALL problems
are reported together before any encoding starts. Then the audio is encoded in batches (progress bar) and each
output line is the input line plus ``audio_codes``: a list of frames of 16 ints (12.5 frames per second).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetuning.config import DEFAULT_DEVICE

log = logging.getLogger(__name__)


class DataError(ValueError):
    """The input JSONL has problems; ``problems`` lists every one as 'line N: ...'."""

    def __init__(self, path: str | Path, problems: list[str]):
        super().__init__(f"{path}: {len(problems)} problem(s), nothing was encoded:\n  " + "\n  ".join(problems))
        self.problems = problems


@dataclass
class Bounds:
    """Allowed clip durations in seconds (the reference clip needs at least ``min_seconds`` too)."""

    min_seconds: float = 0.5
    max_seconds: float = 30.0


def resolve_record_path(value: str, base: Path) -> Path:
    """A path from a JSONL line: taken as given if it exists or is absolute, else relative to ``base`` (its folder)."""
    path = Path(value).expanduser()
    return path if path.exists() or path.is_absolute() else base / path


def _clip_seconds(path: Path) -> float | str:
    """Duration of a sound file in seconds, or why it does not decode."""
    from qwen_tts.audio import AudioError, load_audio

    try:
        audio, sr = load_audio(path, max_seconds=None)
    except AudioError as exc:
        return str(exc)
    return audio.shape[0] / sr


def _check_audio(
    record: dict[str, Any], key: str, base: Path, bounds: Bounds, seconds_of: Callable[[Path], float | str]
) -> str | None:
    """None if record[key] is a readable clip within the duration bounds, else the problem."""
    value = record.get(key)
    if not isinstance(value, str) or not value:
        return f"'{key}' is missing (give the path of a sound file)"
    path = resolve_record_path(value, base)
    if not path.is_file():
        return f"{key} {value!r} does not exist"
    seconds = seconds_of(path)
    if isinstance(seconds, str):
        return f"{key} {value!r}: {seconds}"
    if not bounds.min_seconds <= seconds <= bounds.max_seconds:
        return f"{key} {value!r} lasts {seconds:.2f} s, allowed {bounds.min_seconds:g}..{bounds.max_seconds:g} s"
    return None


def validate_records(path: str | Path, bounds: Bounds) -> list[dict[str, Any]]:
    """Parse and check every line; raise DataError listing all problems, else return the records."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, [f"{path} does not exist"])
    base, problems, records = path.parent, [], []
    seconds_of = functools.cache(_clip_seconds)  # every line names the same ref_audio clip: decode it once
    for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {no}: not valid JSON ({exc.msg})")
            continue
        if not isinstance(record, dict):
            problems.append(f"line {no}: expected an object with audio, text, ref_audio")
            continue
        text = record.get("text")
        if not isinstance(text, str) or not text.strip():
            problems.append(f"line {no}: 'text' must be a non-empty transcript, got {text!r}")
        problems += [
            f"line {no}: {p}"
            for k in ("audio", "ref_audio")
            if (p := _check_audio(record, k, base, bounds, seconds_of))
        ]
        records.append(record)
    if not records and not problems:
        problems.append("no records (the file is empty)")
    if problems:
        raise DataError(path, problems)
    return records


def _progress(total: int):
    try:
        from tqdm import tqdm

        return tqdm(total=total, unit="clip", desc="encoding")
    except ImportError:
        return None


def encode_records(records: list[dict[str, Any]], codec, base: Path, batch_size: int) -> list[dict[str, Any]]:
    """Records + ``audio_codes`` (list of [16 ints] frames), encoded ``batch_size`` clips at a time."""
    from qwen_tts.audio import load_audio, resample

    rate = codec.sample_rate
    bar, out = _progress(len(records)), []
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        waves = []
        for rec in chunk:
            audio, sr = load_audio(resolve_record_path(rec["audio"], base), max_seconds=None)
            waves.append(resample(audio, sr, rate))
        for rec, codes in zip(chunk, codec.encode_batch(waves, rate), strict=True):
            out.append({**rec, "audio_codes": codes.tolist()})
        if bar is not None:
            bar.update(len(chunk))
        else:
            log.info("encoded %d/%d clips", len(out), len(records))
    if bar is not None:
        bar.close()
    return out


def prepare(input_jsonl: str | Path, output_jsonl: str | Path, codec_dir: str | Path, *, batch_size: int = 32,
            bounds: Bounds | None = None, device: str = "cpu") -> int:  # fmt: skip
    """Validate everything, then encode and write ``output_jsonl``; returns the number of lines written."""
    from qwen_tts.codec import Codec

    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    records = validate_records(input_jsonl, bounds or Bounds())
    codec = Codec.from_pretrained(codec_dir, device=device)
    encoded = encode_records(records, codec, Path(input_jsonl).parent, batch_size)
    out = Path(output_jsonl)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in encoded), encoding="utf-8")
    tmp.replace(out)
    log.info("wrote %d records with audio_codes to %s", len(encoded), out)
    return len(encoded)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m finetuning.prepare_data", description=__doc__.split("\n")[0])
    p.add_argument("--codec", required=True, help="checkpoint folder (or its speech_tokenizer/ folder)")
    p.add_argument("--input-jsonl", required=True, help="lines with audio, text, ref_audio")
    p.add_argument("--output-jsonl", required=True, help="where to write the lines plus audio_codes")
    p.add_argument("--batch-size", type=int, default=32, help="clips encoded together (32)")
    p.add_argument("--min-seconds", type=float, default=Bounds.min_seconds, help="shortest clip allowed (0.5)")
    p.add_argument("--max-seconds", type=float, default=Bounds.max_seconds, help="longest clip allowed (30)")
    p.add_argument("--device", default=DEFAULT_DEVICE, help=f"auto, cpu, cuda, cuda:N ({DEFAULT_DEVICE})")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[{asctime}] [{levelname:<7}] {name}: {message}", style="{")
    try:
        from finetuning.train import resolve_device  # the same device rule as sft_12hz (auto: the GPU if any)

        prepare(args.input_jsonl, args.output_jsonl, args.codec, batch_size=args.batch_size,
                bounds=Bounds(args.min_seconds, args.max_seconds), device=str(resolve_device(args.device)))  # fmt: skip
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
