"""Reference-clip intake: peak memory and time for each crafted upload of issue 12, the old path vs the new intake.

    .venv/bin/python bench/clips.py [--bomb-seconds 10] [--repeats 1] [--json]

Each measurement runs in a fresh worker process (this file with ``--worker MODE FILE``) so peaks do not mix:
* ``old``: the naive read that main did before this change (reimplemented here as the baseline): ``sf.info`` for the
  duration, ``sf.read(always_2d=True)`` of every channel, ``isfinite``, channel mean, kept at the source rate;
* ``new``: ``bot.services.clips.decode_reference`` in-process (magic, header, block decode, 24 kHz, checks);
* ``isolated``: ``ClipIntake.decode``, the bot's path: the same in a resource-limited child process (its time
  includes starting the child; its peak is the child's whole RSS, Python and numpy included).

Peak memory is the worker's RSS high-water mark (VmHWM) minus its RSS before the decode (after imports), so it
counts libsndfile's and the codecs' C allocations too, not only numpy's. Prints a table and the old/new ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("bench.clips")

REPO = Path(__file__).resolve().parent.parent
MAX_SECONDS = 60.0  # the bot's default max_reference_seconds
MODES = ("old", "new", "isolated")


# -- crafted uploads --------------------------------------------------------------------------------------------------


def _encode(audio: np.ndarray, sr: int, fmt: str, subtype: str | None = None) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, audio, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def _voice(seconds: float, sr: int, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    wave = 0.3 * np.sin(2 * np.pi * 180 * t) * (0.8 + 0.2 * rng.random(len(t)))
    return np.repeat(wave[:, None], channels, axis=1).astype(np.float32) if channels > 1 else wave.astype(np.float32)


def crafted_clips(bomb_seconds: float) -> dict[str, bytes]:
    """name -> file bytes; the bombs are silent, so they compress to a few KB like the issue's."""
    huge = _voice(5.0, 24_000)
    huge[1000] = 3e38
    nan = _voice(5.0, 24_000)
    nan[1000] = np.nan
    return {
        f"ogg_255ch_{bomb_seconds:g}s": _encode(np.zeros((int(bomb_seconds * 24_000), 255), np.float32), 24_000,
                                                "OGG", "VORBIS"),
        "flac_655khz_59s": _encode(np.zeros(59 * 655_350, np.int16), 655_350, "FLAC"),
        "wav_1hz": _encode(np.full(59, 1000, np.int16), 1, "WAV"),
        "wav_1024ch_0.7s": _encode(np.zeros((11_200, 1024), np.int16), 16_000, "WAV"),
        "aiff_5s": _encode(_voice(5.0, 16_000), 16_000, "AIFF"),
        "nist_5s": _encode(_voice(5.0, 16_000), 16_000, "NIST"),
        "mat5_5s": _encode(_voice(5.0, 16_000), 16_000, "MAT5"),
        "mp3_5s": _encode(_voice(5.0, 16_000), 16_000, "MP3"),
        "float_3e38": _encode(huge, 24_000, "WAV", "FLOAT"),
        "float_nan": _encode(nan, 24_000, "WAV", "FLOAT"),
        "silence_10s": _encode(np.zeros(160_000, np.int16), 16_000, "WAV"),
        "short_0.5s": _encode(_voice(0.5, 16_000), 16_000, "WAV"),
        "long_61s": _encode(np.zeros(61 * 16_000, np.int16), 16_000, "WAV"),
        "ok_stereo_48k_59s": _encode(_voice(59.0, 48_000, channels=2), 48_000, "WAV", "PCM_16"),
        "ok_mono_16k_10s": _encode(_voice(10.0, 16_000), 16_000, "WAV", "PCM_16"),
        "ok_opus_48k_20s": _encode(_voice(20.0, 48_000), 48_000, "OGG", "OPUS"),
    }  # fmt: skip


# -- one measurement (worker process) ---------------------------------------------------------------------------------


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def old_load(data: bytes) -> str:
    """main's load_audio + creation's 1 s check, as they were before the intake: every channel decoded at once."""
    import soundfile as sf

    info = sf.info(io.BytesIO(data))
    if info.frames > MAX_SECONDS * info.samplerate:
        return "refused: too_long"
    audio, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    if not np.isfinite(audio).all():
        return "refused: invalid"
    mono = audio.mean(axis=1).astype(np.float32)
    if len(mono) < 1.0 * sr:
        return "refused: short"
    return f"accepted {len(mono)} samples at {sr} Hz"


def new_load(data: bytes, isolated: bool) -> str:
    from bot.errors import BadAttachment
    from bot.services.clip_intake import ClipIntake
    from bot.services.clips import ClipLimits, decode_reference

    limits = ClipLimits(max_seconds=MAX_SECONDS)
    try:
        if isolated:
            clip = asyncio.run(ClipIntake(limits).decode(data, "upload", uploader=1))
        else:
            clip = decode_reference(data, "upload", limits)
    except BadAttachment as exc:
        return f"refused: {exc}"
    return f"accepted {len(clip.audio)} samples at {clip.sample_rate} Hz"


def worker(mode: str, path: str) -> dict:
    import resource

    import soundfile  # noqa: F401  (imported before the baseline so import memory is not counted)
    import soxr  # noqa: F401

    import bot.services.clip_intake  # noqa: F401

    data = Path(path).read_bytes()
    before_kb = _status_kb("VmRSS")
    start = time.perf_counter()
    try:
        outcome = old_load(data) if mode == "old" else new_load(data, isolated=mode == "isolated")
    except Exception as exc:  # the old path's libsndfile errors are outcomes to report, not bench failures
        outcome = f"error: {type(exc).__name__}: {str(exc)[:80]}"
    seconds = time.perf_counter() - start
    peak_kb = _status_kb("VmHWM") - before_kb
    if mode == "isolated":
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the child's whole RSS
    return {"outcome": outcome, "seconds": seconds, "peak_mb": peak_kb / 1024}


# -- driver -----------------------------------------------------------------------------------------------------------


def measure(mode: str, path: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", mode, str(path)],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=900,
    )  # fmt: skip
    if proc.returncode != 0:
        return {"outcome": f"worker died ({proc.returncode}): {proc.stderr.strip()[-120:]}", "seconds": 0, "peak_mb": 0}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bomb-seconds", type=float, default=10.0, help="length of the 255-channel Ogg")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of the table")
    parser.add_argument("--worker", nargs=2, metavar=("MODE", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in crafted_clips(args.bomb_seconds).items():
            path = Path(tmp) / name
            path.write_bytes(data)
            results[name] = {"bytes": len(data), **{mode: measure(mode, path) for mode in MODES}}
            log.info("%s done", name)
    print(json.dumps(results) if args.json else table(results))
    return 0


def table(results: dict) -> str:
    rows = [
        "| clip | file | old: outcome | old peak / time | new: outcome | new peak / time | isolated time / child RSS "
        "| old/new peak |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        old, new, iso = r["old"], r["new"], r["isolated"]
        ratio = old["peak_mb"] / max(new["peak_mb"], 0.1)
        rows.append(
            f"| {name} | {r['bytes'] / 1024:.0f} KB | {_short(old['outcome'])} | {old['peak_mb']:.1f} MB / "
            f"{old['seconds']:.2f} s | {_short(new['outcome'])} | {new['peak_mb']:.1f} MB / {new['seconds']:.2f} s | "
            f"{iso['seconds']:.2f} s / {iso['peak_mb']:.0f} MB | {ratio:.0f}x |"
        )
    return "\n".join(rows)


def _short(outcome: str) -> str:
    if outcome.startswith("refused: `upload` "):
        return "refused: " + outcome.removeprefix("refused: `upload` ").split(";")[0].split(":")[0][:40]
    return outcome[:48]


if __name__ == "__main__":
    sys.exit(main())
