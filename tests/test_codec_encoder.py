"""Codec encoder (MimiModel) through Codec.encode: frame counts, resampling, channel mixing, batching, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qwen_tts.codec.codec import Codec
from qwen_tts.codec.config import CodecConfig
from qwen_tts.codec.tiny import write_tiny_codec

SR = 24_000


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def codec(tmp_path_factory: pytest.TempPathFactory) -> Codec:
    return Codec.from_pretrained(write_tiny_codec(tmp_path_factory.mktemp("ckpt") / "speech_tokenizer"))


def tone(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.shape)).astype(np.float32)


@pytest.mark.parametrize("samples", [1, 1920, 1921, 24_000, 30_001])
def test_frame_count_is_ceil_of_samples_over_1920(codec: Codec, samples: int) -> None:
    codes = codec.encode(tone(1.5, SR)[:samples], SR)
    assert codes.shape == (-(-samples // 1920), 16) and codes.dtype == torch.int64
    assert int(codes.min()) >= 0 and int(codes.max()) < 2048


def test_codes_use_many_entries_and_decode_back(codec: Codec) -> None:
    codes = codec.encode(tone(2.0, SR), SR)
    assert len(torch.unique(codes[:, 0])) > 1 or len(torch.unique(codes)) > 16
    assert codec.decode(codes).shape == (codes.shape[0] * 1920,)


def test_other_rates_are_resampled_to_24k(codec: Codec) -> None:
    audio = tone(1.0, 16_000)
    assert codec.encode(audio, 16_000).shape == (-(-24_000 // 1920), 16)


def test_stereo_is_mixed_to_mono(codec: Codec) -> None:
    left, right = tone(1.0, SR, 1), tone(1.0, SR, 2)
    stereo = np.stack([left, right], axis=1)  # (N, 2) as soundfile returns it
    mono = (left + right) / 2
    assert torch.equal(codec.encode(stereo, SR), codec.encode(mono, SR))
    assert torch.equal(codec.encode(stereo.T, SR), codec.encode(mono, SR))  # (2, N) is accepted too


def test_batch_encode_matches_single_for_the_longest_item(codec: Codec) -> None:
    long, short = tone(1.2, SR, 3), tone(0.5, SR, 4)
    batch = codec.encode_batch([long, short], SR)
    assert batch[0].shape == (15, 16) and batch[1].shape == (7, 16)
    assert torch.equal(batch[0], codec.encode(long, SR))


@pytest.mark.parametrize(
    "audio, sr, message",
    [
        (np.zeros(0, dtype=np.float32), SR, "no samples"),
        (np.full(100, np.nan, dtype=np.float32), SR, "NaN"),
        (np.zeros(100, dtype=np.float32), 0, "sample rate"),
    ],
)
def test_bad_audio_is_rejected(codec: Codec, audio: np.ndarray, sr: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        codec.encode(audio, sr)


def test_decoder_only_codec_refuses_to_encode(codec: Codec, tmp_path) -> None:
    folder = write_tiny_codec(tmp_path / "speech_tokenizer")
    with pytest.raises(ValueError, match="load_encoder"):
        Codec.from_pretrained(folder, load_encoder=False).encode(tone(0.2, SR), SR)


def test_config_round_trip_keeps_unknown_keys(tmp_path) -> None:
    folder = write_tiny_codec(tmp_path / "speech_tokenizer")
    cfg = CodecConfig.from_json(folder / "config.json")
    data = cfg.to_dict()
    data["some_future_key"] = 3
    data["decoder_config"]["another_key"] = "x"
    again = CodecConfig.from_dict(data)
    assert again.to_dict() == data
    assert again.frame_rate == 12.5 and again.decoder_config.total_upsample == 1920


def test_config_rejects_inconsistent_upsampling() -> None:
    with pytest.raises(ValueError, match="decode_upsample_rate"):
        CodecConfig.from_dict({"decode_upsample_rate": 960})
