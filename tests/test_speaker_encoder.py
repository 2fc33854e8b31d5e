"""Speaker encoder: slaney mel filterbank, log-mel front end, ECAPA-TDNN x-vector shape/determinism/keys."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from qwen_tts import mel
from qwen_tts.codec.tiny import init_tiny_weights
from qwen_tts.speaker_encoder import SpeakerEncoder, speaker_embedding

TINY = SimpleNamespace(
    mel_dim=128, enc_dim=32, enc_channels=[16, 16, 16, 16, 48], enc_kernel_sizes=[5, 3, 3, 3, 1],
    enc_dilations=[1, 2, 3, 4, 1], enc_attention_channels=8, enc_res2net_scale=4, enc_se_channels=8,
)  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def encoder() -> SpeakerEncoder:
    return init_tiny_weights(SpeakerEncoder(TINY), seed=3).eval()


def voice(seconds: float, sr: int, f0: float, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    wave = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6))
    return (0.2 * wave + 0.01 * np.random.default_rng(seed).standard_normal(t.shape)).astype(np.float32)


def test_slaney_scale_is_linear_below_1khz_and_invertible() -> None:
    assert mel.hz_to_mel(1000.0) == pytest.approx(15.0)
    assert mel.hz_to_mel(500.0) == pytest.approx(7.5)
    hz = np.array([0.0, 123.4, 999.0, 1000.0, 4321.0, 12000.0])
    np.testing.assert_allclose(mel.mel_to_hz(mel.hz_to_mel(hz)), hz, rtol=1e-12, atol=1e-9)


def test_filterbank_shape_support_and_area() -> None:
    bank = mel.slaney_mel_filterbank()
    assert bank.shape == (128, 513) and bank.dtype == np.float32
    assert (bank >= 0).all()
    assert (bank.sum(axis=1) > 0).all(), "every mel bin must see at least one FFT bin"
    assert not bank[:, 0].any() and not bank[:, -1].any(), "triangles end exactly at fmin = 0 and fmax = 12 kHz"
    low = mel.slaney_mel_filterbank(fmax=8_000)
    assert not low[:, int(np.ceil(8_000 / (24_000 / 1024))) :].any(), "no weight above fmax"
    peaks = bank.argmax(axis=1)
    assert (np.diff(peaks) >= 0).all(), "filters are ordered by centre frequency"
    # Slaney normalisation: each triangle has unit area in Hz (checked where it spans many FFT bins).
    bin_hz = 24_000 / 1024
    area = bank.sum(axis=1) * bin_hz
    np.testing.assert_allclose(area[64:], 1.0, rtol=0.05)


def test_filterbank_rejects_bad_range() -> None:
    with pytest.raises(ValueError, match="fmax"):
        mel.slaney_mel_filterbank(fmax=20_000)


@pytest.mark.parametrize("samples", [1024, 24_000, 36_123])
def test_log_mel_frames_and_floor(samples: int) -> None:
    audio = torch.from_numpy(voice(2.0, 24_000, 150.0)[:samples]).unsqueeze(0)
    spec = mel.log_mel_spectrogram(audio)
    assert spec.shape == (1, (samples + 768 - 1024) // 256 + 1, 128)
    assert float(spec.min()) >= np.log(1e-5) - 1e-6
    silent = mel.log_mel_spectrogram(torch.zeros(1, 4096))
    assert torch.allclose(silent, torch.full_like(silent, np.log(1e-5)), atol=0.2)


def test_log_mel_puts_a_tone_in_the_right_bin() -> None:
    t = torch.arange(24_000) / 24_000
    spec = mel.log_mel_spectrogram(0.5 * torch.sin(2 * torch.pi * 3000 * t).unsqueeze(0))
    centres = mel.mel_to_hz(np.linspace(mel.hz_to_mel(0), mel.hz_to_mel(12_000), 130))[1:-1]
    assert abs(int(spec[0].mean(0).argmax()) - int(np.abs(centres - 3000).argmin())) <= 1


def test_xvector_shape_and_determinism(encoder: SpeakerEncoder) -> None:
    audio = voice(1.5, 24_000, 140.0)
    a, b = speaker_embedding(encoder, audio, 24_000), speaker_embedding(encoder, audio.copy(), 24_000)
    assert a.shape == (32,) and a.dtype == torch.float32
    assert torch.equal(a, b)
    other = speaker_embedding(encoder, voice(1.5, 24_000, 260.0, seed=1), 24_000)
    assert float(torch.nn.functional.cosine_similarity(a, other, dim=0)) < 0.9999


def test_xvector_of_16khz_input_matches_resampled_24khz(encoder: SpeakerEncoder) -> None:
    from qwen_tts.audio import resample

    audio16 = voice(1.5, 16_000, 140.0)
    direct = speaker_embedding(encoder, audio16, 16_000)
    manual = speaker_embedding(encoder, resample(audio16, 16_000, 24_000), 24_000)
    torch.testing.assert_close(direct, manual)


def test_batch_forward_matches_single(encoder: SpeakerEncoder) -> None:
    mels = mel.log_mel_spectrogram(torch.from_numpy(np.stack([voice(1.0, 24_000, f) for f in (120.0, 220.0)])))
    with torch.inference_mode():
        both = encoder(mels)
        torch.testing.assert_close(both[1], encoder(mels[1:])[0], atol=1e-5, rtol=1e-5)


def test_too_short_reference_is_a_clear_error(encoder: SpeakerEncoder) -> None:
    with pytest.raises(ValueError, match="too short"):
        speaker_embedding(encoder, voice(0.02, 24_000, 150.0), 24_000)


def test_empty_or_nan_reference_is_rejected(encoder: SpeakerEncoder) -> None:
    with pytest.raises(ValueError, match="no samples"):
        speaker_embedding(encoder, np.zeros(0, dtype=np.float32), 24_000)
    with pytest.raises(ValueError, match="NaN"):
        speaker_embedding(encoder, np.full(24_000, np.nan, dtype=np.float32), 24_000)


def test_state_dict_uses_official_key_names(encoder: SpeakerEncoder) -> None:
    keys = set(encoder.state_dict())
    assert {
        "blocks.0.conv.weight", "blocks.1.tdnn1.conv.bias", "blocks.3.res2net_block.blocks.2.conv.weight",
        "blocks.2.tdnn2.conv.weight", "blocks.1.se_block.conv1.weight", "blocks.3.se_block.conv2.bias",
        "mfa.conv.weight", "asp.tdnn.conv.weight", "asp.conv.bias", "fc.weight", "fc.bias",
    } <= keys  # fmt: skip
    assert len(keys) == 2 * (1 + 3 * (2 + 3 + 2) + 1 + 2 + 1)
    conv = encoder.blocks[0].conv
    assert conv.padding_mode == "reflect" and conv.padding == "same"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"enc_channels": [16, 16, 16, 16, 40]}, "sum"),
        ({"mel_dim": 80}, "mel_dim"),
        ({"enc_kernel_sizes": [5, 3, 3, 1]}, "same length"),
    ],
)
def test_bad_configs_are_rejected(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SpeakerEncoder(SimpleNamespace(**{**vars(TINY), **change}))
