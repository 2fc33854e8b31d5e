"""Reference-clip intake (bot/services/clips.py, clip_intake.py): every hostile upload of issue 12 is refused with one
clear sentence before any model work, accepted clips come out as mono float32 at 24 kHz, memory stays bounded, and
decodes run one at a time and one per uploader in a resource-limited child."""

from __future__ import annotations

import asyncio
import io
import re
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
import soxr

from bot.errors import BadAttachment
from bot.services import clip_intake, clips
from bot.services.clip_intake import BUSY_EVERYONE, BUSY_UPLOADER, ClipIntake
from bot.services.clips import BLOCK_FRAMES, MODEL_RATE, ClipLimits, decode_clip, decode_reference

LIMITS = ClipLimits(max_seconds=20.0)
FORMATS = "WAV, FLAC or Ogg (Vorbis/Opus)"


def encoded(audio: np.ndarray, sr: int, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def voiced(seconds: float, sr: int, channels: int = 1, amplitude: float = 0.3) -> np.ndarray:
    """A 180 Hz tone with a noisy envelope: loud enough to count as voiced everywhere."""
    rng = np.random.default_rng(3)
    t = np.arange(int(seconds * sr)) / sr
    wave = amplitude * np.sin(2 * np.pi * 180 * t) * (0.8 + 0.2 * rng.random(len(t)))
    return np.repeat(wave[:, None], channels, axis=1).astype(np.float32) if channels > 1 else wave.astype(np.float32)


def assert_one_clear_sentence(message: str) -> None:
    assert "\n" not in message and "Traceback" not in message and "Error" not in message
    assert message[0] in "`ABCDEFGHIJKLMNOPQRSTUVWXYZ" and message.endswith(".")
    assert not re.search(r"[.!?] +[A-Z]", message[:-1]), f"more than one sentence: {message}"


def refusal(data: bytes, filename: str, limits: ClipLimits = LIMITS) -> str:
    with pytest.raises(BadAttachment) as info:
        decode_reference(data, filename, limits)
    message = str(info.value)
    assert_one_clear_sentence(message)
    return message


@pytest.fixture
def no_libsndfile(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any use of libsndfile's parsers fails the test: the refusal must come from the magic bytes alone."""

    def forbidden(*args, **kwargs):
        raise AssertionError("libsndfile was handed the bytes")

    monkeypatch.setattr(sf, "SoundFile", forbidden)
    monkeypatch.setattr(sf, "info", forbidden)
    monkeypatch.setattr(sf, "read", forbidden)


@pytest.fixture
def no_sample_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening (the header) is allowed, decoding samples is not: the refusal must come from the header."""

    def forbidden(self, *args, **kwargs):
        raise AssertionError("samples were decoded")

    monkeypatch.setattr(sf.SoundFile, "read", forbidden)
    monkeypatch.setattr(sf.SoundFile, "blocks", forbidden)


# -- accepted clips ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sr, fmt, subtype",
    [(16_000, "WAV", "PCM_16"), (44_100, "WAV", "FLOAT"), (22_050, "FLAC", None), (32_000, "OGG", "VORBIS"),
     (48_000, "OGG", "OPUS"), (8_000, "WAV", "PCM_U8"), (24_000, "FLAC", "PCM_24")],
)  # fmt: skip
def test_accepted_formats_come_out_mono_float32_at_24k(sr: int, fmt: str, subtype: str | None) -> None:
    source = voiced(2.0, sr)
    clip = decode_reference(encoded(source, sr, fmt, subtype), "a", LIMITS)
    assert clip.sample_rate == MODEL_RATE and clip.audio.dtype == np.float32 and clip.audio.ndim == 1
    assert clip.source_rate == sr and clip.channels == 1
    assert len(clip.audio) == int(np.ceil(len(source) * (MODEL_RATE / sr)))
    assert abs(clip.seconds - 2.0) < 0.01 and clip.voiced_seconds >= 1.9
    assert np.isfinite(clip.audio).all() and float(np.abs(clip.audio).max()) < 1.0


def test_stereo_is_the_channel_mean_resampled_and_padded_like_the_official_package() -> None:
    # 1 s at 44.1 kHz: soxr returns 24_000 samples; librosa's ceil(44_100 x (24_000 / 44_100)) is 24_001 (the float
    # ratio makes the product 24000.000000000004), so the official reference is one sample longer
    sr, n = 44_100, 44_100
    left, right = voiced(n / sr, sr), 0.5 * voiced(n / sr, sr)[::-1]
    clip = decode_reference(encoded(np.stack([left, right], axis=1), sr, subtype="FLOAT"), "s.wav", LIMITS)
    raw = soxr.resample(np.mean(np.stack([left, right], axis=1), axis=-1), sr, MODEL_RATE, quality="HQ")
    assert len(raw) == 24_000 and len(clip.audio) == 24_001 == int(np.ceil(n * (MODEL_RATE / sr)))
    assert np.array_equal(clip.audio[:-1], raw) and clip.audio[-1] == 0.0
    assert clip.channels == 2


def test_bot_resampler_equals_the_library_resampler() -> None:
    """The two layers may not share code (bot/ never imports qwen_tts), so their equality is tested here; both equal
    the official package in tests/parity/test_parity_resample.py."""
    from qwen_tts.audio import resample

    rng = np.random.default_rng(0)
    for sr in (44_100, 22_050, 32_000, 11_025, 16_000, 48_000, 8_000):
        for n in (sr + 1, sr + 7, 3 * sr // 2 + 13):
            wave = (0.2 * rng.standard_normal(n)).astype(np.float32)
            assert np.array_equal(clips.resample_to_model_rate(wave.copy(), sr), resample(wave, sr, MODEL_RATE))


def test_codec_overshoot_of_a_loud_ogg_is_clipped_not_refused() -> None:
    """Opus/Vorbis decode a full-scale recording to peaks of ~1.25-1.5; that is a normal upload."""
    loud = np.clip(2 * voiced(2.0, 48_000, amplitude=0.99), -0.999, 0.999)
    data = encoded(loud, 48_000, "OGG", "OPUS")
    decoded, _ = sf.read(io.BytesIO(data), dtype="float32")
    assert float(np.abs(decoded).max()) > 1.1
    clip = decode_reference(data, "loud.ogg", LIMITS)
    # clipped before resampling; the resampler itself may ring slightly past full scale, as the official one does
    assert np.array_equal(clip.audio, clips.resample_to_model_rate(np.clip(decoded, -1, 1), 48_000))
    assert float(np.abs(clip.audio).max()) < 1.1


# -- the attacks of issue 12 ------------------------------------------------------------------------------------------


def test_255_channel_ogg_is_refused_from_its_header(no_sample_reads: None) -> None:
    data = encoded(np.zeros((800, 255), np.float32), 8_000, "OGG", "VORBIS")
    assert refusal(data, "bomb.ogg") == "`bomb.ogg` has 255 audio channels; upload a mono or stereo recording."


def test_1024_channel_wav_is_refused_from_its_header(no_sample_reads: None) -> None:
    data = encoded(np.zeros((100, 1024), np.int16), 16_000)
    assert refusal(data, "wide.wav") == "`wide.wav` has 1024 audio channels; upload a mono or stereo recording."


@pytest.mark.parametrize("rate, fmt", [(655_350, "FLAC"), (1, "WAV"), (96_000, "WAV"), (7_999, "FLAC")])
def test_sample_rates_outside_8_to_48_khz_are_refused(rate: int, fmt: str, no_sample_reads: None) -> None:
    data = encoded(np.zeros(max(rate // 10, 10), np.int16), rate, fmt)
    assert refusal(data, "odd.flac") == (
        f"`odd.flac` is sampled at {rate} Hz; upload a recording sampled between 8 and 48 kHz."
    )


@pytest.mark.parametrize("fmt, shown", [("AIFF", "AIFF"), ("NIST", "NIST SPHERE"), ("MAT5", "MATLAB (MAT5)"),
                                        ("MP3", "MP3"), ("AU", "AU"), ("CAF", "CAF"), ("W64", "Wave64")])  # fmt: skip
def test_other_containers_are_refused_before_libsndfile_parses_them(fmt: str, shown: str) -> None:
    data = encoded(voiced(1.5, 16_000), 16_000, fmt)
    with pytest.MonkeyPatch.context() as patch:
        for name in ("SoundFile", "info", "read"):
            patch.setattr(sf, name, lambda *a, **k: pytest.fail("libsndfile was handed the bytes"))
        message = refusal(data, "voice.bin")
    assert message == f"`voice.bin` is in {shown} format; export it as {FORMATS} and upload it again."


def test_unknown_bytes_are_not_audio(no_libsndfile: None) -> None:
    hint = f"upload a {FORMATS} recording of one person speaking clearly."
    assert refusal(b"GIF89a" + bytes(500), "cat.gif") == f"`cat.gif` is not a sound file I can read; {hint}"
    assert refusal(b"", "none.wav") == f"`none.wav` is empty; {hint}"
    assert refusal(bytes(1000), "zeros.wav") == f"`zeros.wav` is not a sound file I can read; {hint}"


def test_a_wav_magic_on_garbage_is_not_audio() -> None:
    message = refusal(b"RIFF\x00\x00\x00\x00WAVEjunkjunk" + bytes(100), "fake.wav")
    assert (
        message
        == f"`fake.wav` is not a sound file I can read; upload a {FORMATS} recording of one person speaking clearly."
    )


@pytest.mark.parametrize("subtype, shown", [("ULAW", "ULAW"), ("IMA_ADPCM", "IMA ADPCM"), ("GSM610", "GSM610")])
def test_wav_with_a_refused_codec(subtype: str, shown: str, no_sample_reads: None) -> None:
    data = encoded(voiced(1.5, 8_000), 8_000, "WAV", subtype)
    assert refusal(data, "c.wav") == (
        f"`c.wav` is a WAV file encoded as {shown}, which I do not accept; export it as 16-bit WAV, FLAC or "
        "Ogg Vorbis/Opus and upload it again."
    )


def test_a_finite_3e38_sample_is_refused_before_any_model_work() -> None:
    wave = voiced(2.0, 24_000)
    wave[1234] = 3e38
    assert refusal(encoded(wave, 24_000, subtype="FLOAT"), "huge.wav") == (
        "`huge.wav` contains samples far outside the valid range of -1 to 1 (peak 3e+38); export it again as "
        "16-bit WAV or FLAC."
    )


def test_opposite_huge_samples_in_two_channels_do_not_cancel_in_the_mean() -> None:
    wave = voiced(2.0, 24_000, channels=2)
    wave[500] = (3e38, -3e38)
    assert "far outside the valid range" in refusal(encoded(wave, 24_000, subtype="FLOAT"), "x.wav")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_refused(bad: float) -> None:
    wave = voiced(2.0, 24_000)
    wave[BLOCK_FRAMES + 5] = bad  # in the second block: every block is checked
    assert refusal(encoded(wave, 24_000, subtype="FLOAT"), "nan.wav") == (
        "`nan.wav` contains invalid samples (NaN or infinity); export it again as 16-bit WAV or FLAC."
    )


def test_silence_is_refused() -> None:
    hint = f"upload a {FORMATS} recording of one person speaking clearly."
    assert refusal(encoded(np.zeros(48_000, np.int16), 16_000), "quiet.wav") == f"`quiet.wav` is silent; {hint}"
    hiss = (0.0005 * np.random.default_rng(0).standard_normal(48_000)).astype(np.float32)  # -66 dBFS noise floor
    assert refusal(encoded(hiss, 16_000, subtype="FLOAT"), "hiss.wav") == f"`hiss.wav` is silent; {hint}"


def test_too_little_sound_is_refused_even_in_a_long_file() -> None:
    expected = (
        "`short.wav` is shorter than 1 s of speech (only {:.1f} s of sound); upload at least 1 s of one person "
        "speaking clearly."
    )
    assert refusal(encoded(voiced(0.5, 16_000), 16_000), "short.wav") == expected.format(0.5)
    padded = np.concatenate([np.zeros(64_000, np.float32), voiced(0.6, 16_000), np.zeros(64_000, np.float32)])
    assert refusal(encoded(padded, 16_000), "short.wav") == expected.format(0.6)


def test_too_long_is_refused_from_the_header(no_sample_reads: None) -> None:
    data = encoded(np.zeros(int(25.5 * 8_000), np.int16), 8_000)
    assert refusal(data, "long.wav") == (
        "`long.wav` is too long (25.5 s, the limit is 20 s); trim it to at most 20 s of one person speaking."
    )


@pytest.mark.parametrize("fmt", ["WAV", "FLAC"])
def test_truncated_files_are_cut_off(fmt: str) -> None:
    data = encoded(voiced(3.0, 24_000), 24_000, fmt)
    assert refusal(data[: len(data) // 2], f"cut.{fmt.lower()}") == (
        f"`cut.{fmt.lower()}` is cut off: the file ends before its header says it should; export it again and "
        "upload the complete file."
    )


def test_filenames_cannot_break_the_message() -> None:
    message = refusal(b"junk" * 100, "a`b\ncd" + "x" * 200)
    assert message.startswith("`abcd" + "x" * 56 + "` is not a sound file")


# -- bounded memory ---------------------------------------------------------------------------------------------------


def test_peak_memory_decoding_a_long_stereo_file_is_about_one_mono_clip() -> None:
    """A 59 s stereo 48 kHz file: the whole stereo decode would be 22.7 MB; the intake holds the mono clip
    (11.3 MB) plus one block, never the interleaved channels."""
    sr, frames = 48_000, 59 * 48_000
    data = encoded(
        (0.1 * np.random.default_rng(0).standard_normal((frames, 2))).astype(np.float32), sr, "WAV", "PCM_16"
    )
    tracemalloc.start()
    try:
        clip = decode_clip(data, ClipLimits(max_seconds=60.0))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    mono_bytes, stereo_bytes = frames * 4, frames * 2 * 4
    assert len(clip.audio) == 59 * MODEL_RATE
    assert peak <= mono_bytes + 8 * BLOCK_FRAMES * 2 * 4, f"peak {peak / 1e6:.1f} MB"
    assert peak < 0.6 * stereo_bytes


# -- the bot's gate: isolation, one at a time, one per uploader -------------------------------------------------------


@pytest.mark.asyncio
async def test_isolated_decode_accepts_and_refuses_like_in_process() -> None:
    intake = ClipIntake(LIMITS)
    data = encoded(voiced(2.0, 44_100, channels=2), 44_100)
    clip = await intake.decode(data, "ok.wav", uploader=1)
    assert np.array_equal(clip.audio, decode_reference(data, "ok.wav", LIMITS).audio)
    assert (clip.sample_rate, clip.source_rate, clip.channels) == (MODEL_RATE, 44_100, 2)
    bomb = encoded(np.zeros((800, 255), np.float32), 8_000, "OGG", "VORBIS")
    with pytest.raises(BadAttachment) as info:
        await intake.decode(bomb, "bomb.ogg", uploader=1)
    assert str(info.value) == refusal(bomb, "bomb.ogg")


@pytest.mark.asyncio
@pytest.mark.parametrize("limits", [ClipLimits(max_seconds=60.0, memory_mb=4), ClipLimits(timeout_s=0.05)])
async def test_a_decoder_over_its_memory_or_time_is_stopped_and_the_next_upload_works(limits: ClipLimits) -> None:
    data = encoded(voiced(50.0, 48_000, channels=2), 48_000)  # needs ~10 MB for its mono clip alone
    with pytest.raises(BadAttachment) as info:
        await ClipIntake(limits).decode(data, "big.wav", uploader=1)
    assert str(info.value) == (
        "`big.wav` took more memory or time to decode than an upload may use; export a shorter mono WAV or FLAC "
        "and upload it again."
    )
    clip = await ClipIntake(LIMITS).decode(encoded(voiced(2.0, 16_000), 16_000), "ok.wav", uploader=1)
    assert clip.seconds == 2.0


@pytest.mark.asyncio
async def test_one_decode_in_flight_per_uploader_and_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    running, most = 0, 0

    def counted(data: bytes, limits: ClipLimits):  # calls the real decode, only counts overlap
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            return decode_clip(data, limits)
        finally:
            running -= 1

    monkeypatch.setattr(clip_intake, "decode_clip", counted)
    intake = ClipIntake(LIMITS, isolated=False)
    data = encoded(voiced(8.0, 44_100, channels=2), 44_100)
    first = asyncio.create_task(intake.decode(data, "a.wav", uploader=7))
    await asyncio.sleep(0)
    with pytest.raises(BadAttachment) as info:
        await intake.decode(data, "b.wav", uploader=7)
    assert str(info.value) == BUSY_UPLOADER
    assert_one_clear_sentence(BUSY_UPLOADER)
    others = [intake.decode(data, f"{u}.wav", uploader=u) for u in (8, 9, 10)]
    results = await asyncio.gather(first, *others)
    assert len(results) == 4 and most == 1
    assert (await intake.decode(data, "again.wav", uploader=7)).seconds == pytest.approx(8.0, abs=1e-3)  # free again


@pytest.mark.asyncio
async def test_too_many_waiting_decodes_are_refused() -> None:
    intake = ClipIntake(LIMITS, isolated=False, max_waiting=1)
    data = encoded(voiced(8.0, 44_100), 44_100)
    running = asyncio.create_task(intake.decode(data, "a.wav", uploader=1))
    waiting = asyncio.create_task(intake.decode(data, "b.wav", uploader=2))
    await asyncio.sleep(0)
    with pytest.raises(BadAttachment) as info:
        await intake.decode(data, "c.wav", uploader=3)
    assert str(info.value) == BUSY_EVERYONE
    assert_one_clear_sentence(BUSY_EVERYONE)
    await asyncio.gather(running, waiting)


@pytest.mark.asyncio
async def test_a_cancelled_upload_kills_its_decoder_and_frees_the_uploader() -> None:
    intake = ClipIntake(LIMITS)
    task = asyncio.create_task(intake.decode(encoded(voiced(19.0, 48_000, 2), 48_000), "a.wav", uploader=5))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await intake.decode(encoded(voiced(2.0, 16_000), 16_000), "b.wav", uploader=5)).seconds == 2.0


@pytest.mark.asyncio
async def test_the_decoder_child_does_not_inherit_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", "secret")
    env = clip_intake._child_env()
    assert "DISCORD_TOKEN" not in env and str(clip_intake.REPO_ROOT) in env["PYTHONPATH"]
    clip = await ClipIntake(LIMITS).decode(encoded(voiced(2.0, 16_000), 16_000), "ok.wav", uploader=1)
    assert clip.seconds == 2.0
