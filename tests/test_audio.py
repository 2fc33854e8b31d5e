"""Reference audio loading and validation: each kind of bad input gets its own AudioError, before model work."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from qwen_tts.audio import AudioError, load_audio, resample, to_mono, validate_audio


def encoded(audio: np.ndarray, sr: int, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def noise(seconds: float, sr: int, channels: int = 1) -> np.ndarray:
    shape = (int(seconds * sr), channels) if channels > 1 else (int(seconds * sr),)
    return (0.1 * np.random.default_rng(0).standard_normal(shape)).astype(np.float32)


@pytest.mark.parametrize("fmt, subtype", [("WAV", "PCM_16"), ("WAV", "FLOAT"), ("FLAC", None), ("OGG", None)])
def test_reads_common_formats_as_float32_mono(fmt: str, subtype: str | None) -> None:
    audio, sr = load_audio(encoded(noise(0.5, 16_000), 16_000, fmt, subtype))
    assert sr == 16_000 and audio.dtype == np.float32 and audio.shape == (8_000,)


def test_stereo_is_averaged(tmp_path: Path) -> None:
    stereo = noise(0.3, 24_000, channels=2)
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, 24_000, subtype="FLOAT")
    audio, _ = load_audio(path)
    np.testing.assert_allclose(audio, stereo.mean(axis=1), atol=1e-7)
    assert load_audio(str(path))[0].shape == audio.shape


def kind_of(source, **kwargs) -> str:
    with pytest.raises(AudioError) as info:
        load_audio(source, **kwargs)
    assert isinstance(info.value, ValueError)
    return info.value.kind


def test_missing_file_is_unreadable(tmp_path: Path) -> None:
    assert kind_of(tmp_path / "nope.wav") == "unreadable"
    assert kind_of(tmp_path) == "unreadable"  # a folder is not a file


def test_empty_inputs(tmp_path: Path) -> None:
    (tmp_path / "zero.wav").write_bytes(b"")
    assert kind_of(tmp_path / "zero.wav") == "empty"
    assert kind_of(encoded(np.zeros(0, dtype=np.float32), 24_000)) == "empty"


def test_non_audio_bytes() -> None:
    assert kind_of(b"this is a text file, not a sound file\n" * 20) == "not_audio"
    assert kind_of(b"\x89PNG\r\n\x1a\n" + bytes(200)) == "not_audio"


@pytest.mark.parametrize("fmt", ["WAV", "FLAC"])
def test_truncated_files(fmt: str) -> None:
    data = encoded(noise(1.0, 24_000), 24_000, fmt)
    assert kind_of(data[: len(data) // 2]) == "truncated"


def test_over_long_audio_default_and_configurable() -> None:
    long = encoded(np.zeros(61 * 8_000, dtype=np.int16), 8_000, subtype="PCM_16")
    err = pytest.raises(AudioError, load_audio, long)
    assert err.value.kind == "too_long" and "60" in str(err.value)
    assert kind_of(encoded(noise(2.0, 8_000), 8_000), max_seconds=1.5) == "too_long"
    assert load_audio(long, max_seconds=None)[0].shape == (61 * 8_000,)


def test_non_finite_samples_are_invalid() -> None:
    bad = noise(0.2, 24_000)
    bad[10] = np.inf
    assert kind_of(encoded(bad, 24_000, subtype="FLOAT")) == "invalid"


def test_messages_name_the_problem() -> None:
    with pytest.raises(AudioError, match="truncated audio"):
        data = encoded(noise(1.0, 24_000), 24_000)
        load_audio(data[:1000])
    with pytest.raises(AudioError, match="not an audio file"):
        load_audio(b"junk" * 100)


def test_resample_length_and_identity() -> None:
    audio = noise(1.0, 16_000)
    assert resample(audio, 16_000, 24_000).shape == (24_000,)
    assert resample(audio, 16_000, 16_000) is not None and np.array_equal(resample(audio, 16_000, 16_000), audio)
    with pytest.raises(ValueError, match="positive"):
        resample(audio, 0, 24_000)


def test_to_mono_shapes() -> None:
    assert to_mono(np.ones((100, 2))).shape == (100,)
    assert to_mono(np.ones((2, 100))).shape == (100,)
    with pytest.raises(ValueError, match="shape"):
        to_mono(np.ones((2, 3, 4)))


def test_validate_audio_checks_in_memory_clips() -> None:
    assert validate_audio(np.ones((100, 2)), 24_000).shape == (100,)
    cases = [
        (np.zeros(0), 24_000, {}, "empty"),
        (np.array([0.0, np.nan]), 24_000, {}, "invalid"),
        (np.zeros(10), 0, {}, "invalid"),
        (np.zeros(24_001), 24_000, {"max_seconds": 1.0}, "too_long"),
    ]
    for audio, sr, kwargs, kind in cases:
        with pytest.raises(AudioError) as info:
            validate_audio(audio, sr, **kwargs)
        assert info.value.kind == kind


@pytest.mark.parametrize("sr", [44_100, 22_050, 32_000, 11_025, 16_000, 48_000])
def test_resample_length_is_the_official_ceil_and_only_pads(sr: int) -> None:
    """The official path (librosa) pads soxr's output to ceil(N x ratio), with the ratio as a float; soxr alone is one
    sample short for about half of all lengths at 44.1/22.05/32/11.025 kHz, which drops or changes the last
    reference-code frame."""
    import soxr

    from qwen_tts.audio import resampled_length

    short = 0
    for n in range(sr, sr + 40):
        audio = noise(n / sr + 1e-9, sr)[:n]
        out = resample(audio, sr, 24_000)
        raw = soxr.resample(audio, sr, 24_000, quality="HQ")
        assert len(out) == resampled_length(n, sr, 24_000) == int(np.ceil(n * (24_000.0 / sr)))
        assert np.array_equal(out[: len(raw)], raw) and not out[len(raw) :].any()
        short += len(raw) < len(out)
    if sr in (44_100, 22_050, 32_000, 11_025):
        assert short >= 5  # the bug this guards against is real at these rates


def test_resampled_length_follows_the_float_ratio() -> None:
    """1 s at 44.1 kHz: 44_100 x (24_000 / 44_100) is 24000.000000000004 in float64, so the official length is 24_001."""
    from qwen_tts.audio import resampled_length

    assert resampled_length(44_100, 44_100, 24_000) == 24_001
    assert resampled_length(16_000, 16_000, 24_000) == 24_000
