"""Reference-clip resampling parity (issue 12 item 3): the bot's intake (bot/services/clips.py), the library's loader
(qwen_tts.audio) and the official package read the same uploaded file to the same 24 kHz samples, bit for bit, and
the codec encodes it to the same reference codes.

The official path pads soxr's output to ceil(N x ratio); soxr alone is one sample short for about half of all lengths
at 44.1, 22.05, 32 and 11.025 kHz. The lengths below are picked so that every rate has lengths where soxr alone is
short, one where it is not, and one where the missing sample is a whole missing reference-code frame.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

from bot.services.clip_intake import ClipIntake
from bot.services.clips import ClipLimits, decode_reference
from qwen_tts.audio import load_audio, resample
from tests.oracle.client import Oracle, OracleResults

pytestmark = pytest.mark.parity

MODEL_RATE = 24_000
SAMPLES_PER_FRAME = 1920
RATES = (44_100, 22_050, 32_000, 11_025)
LIMITS = ClipLimits(max_seconds=60.0)


def official_length(n: int, rate: int) -> int:
    return int(np.ceil(n * (float(MODEL_RATE) / rate)))


def soxr_alone_is_short(n: int, rate: int) -> bool:
    return len(soxr.resample(np.zeros(n, np.float32), rate, MODEL_RATE, quality="HQ")) < official_length(n, rate)


def frame_edge_length(rate: int) -> int | None:
    """A length whose missing sample is a whole reference-code frame (none exists at 32 kHz below 10 s)."""
    candidates = range(int(1.3 * rate), int(10 * rate))
    return next(
        (n for n in candidates if official_length(n, rate) % SAMPLES_PER_FRAME == 1 and soxr_alone_is_short(n, rate)),
        None,
    )


def lengths_for(rate: int) -> list[int]:
    """Two lengths where soxr alone is short, one where it is not, and the frame-edge length where there is one."""
    start = int(1.3 * rate)
    short = [n for n in range(start, start + 400) if soxr_alone_is_short(n, rate)][:2]
    exact = next(n for n in range(start, start + 400) if not soxr_alone_is_short(n, rate))
    edge = frame_edge_length(rate)
    return [*short, exact] + ([edge] if edge is not None else [])


def speechlike(n: int, rate: int, seed: int, channels: int = 1) -> np.ndarray:
    """A gliding harmonic tone with an envelope plus a little noise, peak well under 1 (voiced throughout)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    phase = 2 * np.pi * np.cumsum(140 + 60 * np.sin(2 * np.pi * 0.7 * t)) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 6))
    wave = 0.3 * (0.5 + 0.5 * np.sin(2 * np.pi * 2.3 * t) ** 2) * voiced
    out = np.stack([wave * (0.6 + 0.4 * c) for c in range(channels)], axis=1) if channels > 1 else wave[:, None]
    return (out + 0.02 * rng.standard_normal(out.shape)).astype(np.float32)


def file_bytes(audio: np.ndarray, rate: int, fmt: str, subtype: str | None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def build_cases() -> dict[str, bytes]:
    cases = {}
    for rate in RATES:
        for i, n in enumerate(lengths_for(rate)):
            cases[f"wav{rate}_{n}"] = file_bytes(speechlike(n, rate, seed=i), rate, "WAV", "PCM_16")
    n = lengths_for(44_100)[0]
    cases["stereo_float44100"] = file_bytes(speechlike(n, 44_100, seed=9, channels=2), 44_100, "WAV", "FLOAT")
    cases["flac22050"] = file_bytes(speechlike(lengths_for(22_050)[1], 22_050, seed=10), 22_050, "FLAC", None)
    cases["vorbis32000"] = file_bytes(speechlike(lengths_for(32_000)[0], 32_000, seed=11), 32_000, "OGG", "VORBIS")
    return cases


CASES = build_cases()


@pytest.fixture(scope="module")
def official(oracle: Oracle, tiny_codec_dir: Path) -> OracleResults:
    jobs = [
        {"id": name, "op": "reference", "checkpoint": str(tiny_codec_dir), "args": {"file": name}} for name in CASES
    ]
    inputs = {name: torch.frombuffer(bytearray(data), dtype=torch.uint8) for name, data in CASES.items()}
    return oracle.run(jobs, inputs=inputs)


@pytest.fixture(scope="module")
def codec(tiny_codec_dir: Path):
    from qwen_tts.codec import Codec

    torch.set_num_threads(1)
    return Codec.from_pretrained(tiny_codec_dir)


def test_the_cases_exercise_the_short_soxr_output() -> None:
    for rate in RATES:
        short_1, short_2, exact, *edge = lengths_for(rate)
        assert soxr_alone_is_short(short_1, rate) and soxr_alone_is_short(short_2, rate)
        assert not soxr_alone_is_short(exact, rate)
    edges = {rate: frame_edge_length(rate) for rate in RATES}
    assert all(edges[rate] is not None for rate in (44_100, 22_050, 11_025))


def test_frame_edge_keeps_its_last_code_frame(official: OracleResults) -> None:
    """Where soxr alone would drop the clip's last code frame, the official codes have it, and so do ours (above)."""
    for rate in (44_100, 22_050, 11_025):
        n = frame_edge_length(rate)
        frames = len(official[f"wav{rate}_{n}"]["codes"])
        assert frames == -(-official_length(n, rate) // SAMPLES_PER_FRAME)
        assert frames == -(-(official_length(n, rate) - 1) // SAMPLES_PER_FRAME) + 1


@pytest.mark.parametrize("name", sorted(CASES))
def test_bot_intake_equals_official(name: str, official: OracleResults) -> None:
    theirs = official[name]["wav"].numpy()
    ours = decode_reference(CASES[name], f"{name}.bin", LIMITS).audio
    assert ours.shape == theirs.shape
    assert np.array_equal(ours, theirs)


@pytest.mark.parametrize("name", sorted(CASES))
def test_library_loader_equals_official(name: str, official: OracleResults) -> None:
    audio, rate = load_audio(CASES[name])
    ours = resample(audio, rate, MODEL_RATE)
    assert np.array_equal(ours, official[name]["wav"].numpy())


@pytest.mark.parametrize("name", sorted(CASES))
def test_reference_codes_equal_official(name: str, official: OracleResults, codec) -> None:
    """Codes of the bot's stored clip (already 24 kHz) and of the library path (the raw file's rate) both match."""
    theirs = official[name]["codes"]
    stored = decode_reference(CASES[name], f"{name}.bin", LIMITS).audio
    assert torch.equal(codec.encode(stored, MODEL_RATE), theirs)
    assert torch.equal(codec.encode(*load_audio(CASES[name])), theirs)


def test_isolated_intake_returns_the_same_samples(official: OracleResults) -> None:
    """The child-process decode hands back exactly what the in-process one computes."""
    name = "stereo_float44100"
    clip = asyncio.run(ClipIntake(LIMITS).decode(CASES[name], f"{name}.wav", uploader=1))
    assert clip.sample_rate == MODEL_RATE
    assert np.array_equal(clip.audio, official[name]["wav"].numpy())
