"""Reference-clip intake: an uploaded recording -> checked mono float32 at the model rate, or one clear refusal.

Anyone who can upload can attack the decoder (issue 12: a 98 KB Ogg with 255 channels decoded to 3.5 GB, a 655 kHz
FLAC, AIFF/NIST/MAT5/MP3 reaching libsndfile's parsers, a finite 3e38 sample failing only after the GPU job), so the
checks run cheapest first and nothing is decoded before the header passed:

1. magic bytes: only RIFF/WAVE, fLaC and OggS reach libsndfile at all (its other parsers never see the bytes);
2. header (``soundfile.SoundFile``, which reads no samples): container and codec allowlist, 1 or 2 channels,
   8 to 48 kHz, declared length within ``max_seconds``, a WAV data chunk that is really there;
3. samples, read in blocks into one reused buffer and downmixed as read (peak ~ one block plus the mono clip), each
   block checked finite and within range, stopping one frame past the length bound whatever the header claimed;
4. resampled to 24 kHz exactly like the official package (soxr HQ, padded to ceil(N x ratio) as librosa does);
5. silence and clips with under ``min_voiced_seconds`` of sound are refused.

``ClipIntake.decode`` (clip_intake.py, the bot's path) runs steps 1-5 in a child process under RLIMIT_AS/RLIMIT_CPU
and a wall timeout, one decode at a time process-wide and one in flight per uploader; a crash in libsndfile then
costs one refusal, not the bot. ``decode_reference`` is the same work in-process (CLI, tests).
This module must not import ``qwen_tts`` (layers); tests/parity proves its resampler equals qwen_tts's and the
official package's.
"""

from __future__ import annotations

import io
import math
import re
import struct
from dataclasses import asdict, dataclass

import numpy as np

from bot.errors import BadAttachment

MODEL_RATE = 24_000  # the codec's and speaker encoder's rate; clips are stored at it
BLOCK_FRAMES = 32_768  # frames decoded per read: bounds the multichannel part of peak memory
WINDOW_SECONDS = 0.02  # loudness window for the silence / voiced-length checks
OVERSHOOT_CLIP = 2.0  # |x| up to this is clipped to [-1, 1] (Vorbis/Opus overshoot loud input by ~1.5x); more refused
FORMATS = "WAV, FLAC or Ogg (Vorbis/Opus)"
HINT = f"upload a {FORMATS} recording of one person speaking clearly"

# magic bytes -> the libsndfile containers they may turn out to be, and the codecs accepted in each
CONTAINERS = {"WAV": ("WAV", "WAVEX"), "FLAC": ("FLAC",), "OGG": ("OGG",)}
CODECS = {
    "WAV": {"PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"},
    "WAVEX": {"PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"},
    "FLAC": {"PCM_S8", "PCM_16", "PCM_24"},
    "OGG": {"VORBIS", "OPUS"},
}
# formats people do upload, named in the refusal so they know what to convert
KNOWN_OTHERS = (
    (b"FORM", "AIFF"),
    (b"NIST_1A", "NIST SPHERE"),
    (b"MATLAB", "MATLAB (MAT5)"),
    (b"ID3", "MP3"),
    (b".snd", "AU"),
    (b"caff", "CAF"),
    (b"RF64", "RF64"),
    (b"riff", "Wave64"),
    (b"Creative Voice File", "VOC"),
    (b"\x1aE\xdf\xa3", "WebM/Matroska"),
)


@dataclass(frozen=True)
class ClipLimits:
    """What an uploaded reference clip may be; the CPU/memory/time budget applies to the isolated decode."""

    max_seconds: float = 60.0
    max_channels: int = 2
    min_rate: int = 8_000
    max_rate: int = 48_000
    min_voiced_seconds: float = 1.0
    silence_dbfs: float = -50.0  # a 20 ms window quieter than this (RMS) counts as silence
    memory_mb: int = 384  # address space the decoding child may add to what Python + numpy already map
    cpu_seconds: int = 30
    timeout_s: float = 45.0

    def as_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Clip:
    """An accepted reference: ``audio`` is finite float32 mono at ``sample_rate`` (always ``MODEL_RATE``), resampled
    from source samples that were within [-1, 1] (the resampler may ring slightly past full scale, as the official
    one does; it is not clipped again so that the reference codes stay identical to the official ones)."""

    audio: np.ndarray
    sample_rate: int
    seconds: float
    voiced_seconds: float
    source_rate: int
    channels: int
    format: str


class ClipRefused(Exception):
    """A refusal as data (it crosses the process boundary); ``sentence(filename)`` is what the user reads."""

    def __init__(self, kind: str, **details: object) -> None:
        super().__init__(kind, details)
        self.kind = kind
        self.details = details

    def sentence(self, filename: str) -> str:
        return refusal_sentence(self.kind, shown_name(filename), self.details)


SENTENCES = {
    "empty": "`{name}` is empty; " + HINT + ".",
    "not_audio": "`{name}` is not a sound file I can read; " + HINT + ".",
    "other_format": "`{name}` is in {format} format; export it as " + FORMATS + " and upload it again.",
    "codec": "`{name}` is a {container} file encoded as {codec}, which I do not accept; export it as 16-bit WAV, "
    "FLAC or Ogg Vorbis/Opus and upload it again.",
    "channels": "`{name}` has {channels} audio channels; upload a mono or stereo recording.",
    "rate": "`{name}` is sampled at {rate} Hz; upload a recording sampled between {min_khz:g} and {max_khz:g} kHz.",
    "too_long": "`{name}` is too long ({seconds:.1f} s, the limit is {limit:g} s); trim it to at most {limit:g} s "
    "of one person speaking.",
    "over_long": "`{name}` is too long (more than {limit:g} s, the limit is {limit:g} s); trim it to at most "
    "{limit:g} s of one person speaking.",
    "truncated": "`{name}` is cut off: the file ends before its header says it should; export it again and upload "
    "the complete file.",
    "no_samples": "`{name}` contains no audio; " + HINT + ".",
    "non_finite": "`{name}` contains invalid samples (NaN or infinity); export it again as 16-bit WAV or FLAC.",
    "out_of_range": "`{name}` contains samples far outside the valid range of -1 to 1 (peak {peak:.3g}); export it "
    "again as 16-bit WAV or FLAC.",
    "silent": "`{name}` is silent; " + HINT + ".",
    "short": "`{name}` is shorter than {min_voiced:g} s of speech (only {voiced:.1f} s of sound); upload at least "
    "{min_voiced:g} s of one person speaking clearly.",
    "too_costly": "`{name}` took more memory or time to decode than an upload may use; export a shorter mono WAV or "
    "FLAC and upload it again.",
}


def refusal_sentence(kind: str, name: str, details: dict) -> str:
    return SENTENCES[kind].format(name=name, **details)


def shown_name(filename: str) -> str:
    """The upload's name as it may appear inside backticks in a Discord message (no markup, no control chars)."""
    cleaned = re.sub(r"[`\x00-\x1f\x7f]", "", filename or "")[:60]
    return cleaned or "the file"


# -- the decode itself (in the child process, or in-process via decode_reference) ------------------------------------


def decode_reference(data: bytes, filename: str, limits: ClipLimits) -> Clip:
    """In-process intake of one upload; raises BadAttachment (one sentence, with what to do) when it is refused."""
    try:
        return decode_clip(data, limits)
    except ClipRefused as refused:
        raise BadAttachment(refused.sentence(filename)) from None


def decode_clip(data: bytes, limits: ClipLimits) -> Clip:
    """Steps 1-5 of the module docstring; raises ClipRefused."""
    import soundfile as sf

    expected = sniff_container(data)
    try:
        f = sf.SoundFile(io.BytesIO(data))  # parses the header only
    except (sf.LibsndfileError, RuntimeError, TypeError):
        raise ClipRefused("not_audio") from None
    with f:
        check_header(f.format, f.subtype, f.channels, f.samplerate, f.frames, expected, limits)
        if expected == "WAV" and wav_data_shortfall(data):
            raise ClipRefused("truncated")
        try:
            # no name kept for the source-rate clip, so it is freed as soon as the resampler has read it
            audio = resample_to_model_rate(read_mono(f, limits), f.samplerate)
        except sf.LibsndfileError:
            raise ClipRefused("truncated") from None
        rate, channels, container = f.samplerate, f.channels, f.format
    voiced = check_voice(audio, limits)
    return Clip(audio, MODEL_RATE, len(audio) / MODEL_RATE, voiced, rate, channels, container)


def sniff_container(data: bytes) -> str:
    """WAV, FLAC or OGG from the first bytes, before any parser runs; anything else is refused here."""
    if not data:
        raise ClipRefused("empty")
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "WAV"
    if data[:4] == b"fLaC":
        return "FLAC"
    if data[:4] == b"OggS":
        return "OGG"
    for magic, name in KNOWN_OTHERS:
        if data.startswith(magic):
            return _refuse_other(name)
    if len(data) >= 2 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0:  # an MPEG audio frame sync with no ID3 tag
        return _refuse_other("MP3")
    raise ClipRefused("not_audio")


def _refuse_other(name: str) -> str:
    raise ClipRefused("other_format", format=name)


def check_header(
    container: str, codec: str, channels: int, rate: int, frames: int, expected: str, limits: ClipLimits
) -> None:
    if container not in CONTAINERS[expected] or codec not in CODECS.get(container, ()):
        raise ClipRefused("codec", container=expected, codec=codec.replace("_", " "))
    if not 1 <= channels <= limits.max_channels:
        raise ClipRefused("channels", channels=channels)
    if not limits.min_rate <= rate <= limits.max_rate:
        raise ClipRefused("rate", rate=rate, min_khz=limits.min_rate / 1000, max_khz=limits.max_rate / 1000)
    if frames > max_frames(rate, limits):
        raise ClipRefused("too_long", seconds=frames / rate, limit=limits.max_seconds)


def max_frames(rate: int, limits: ClipLimits) -> int:
    return int(limits.max_seconds * rate)


def read_mono(f, limits: ClipLimits) -> np.ndarray:
    """Decode block by block into one reused (BLOCK_FRAMES, channels) buffer, check each block, and write only its
    channel mean into the mono clip (allocated once at the declared length, grown only if the header lied)."""
    limit = max_frames(f.samplerate, limits)
    buffer = np.empty((BLOCK_FRAMES, f.channels), dtype=np.float32)
    mono = np.empty(min(max(f.frames, BLOCK_FRAMES), limit + 1), dtype=np.float32)
    total = 0
    while True:
        block = f.read(BLOCK_FRAMES, dtype="float32", always_2d=True, out=buffer)
        if len(block) == 0:
            break
        check_samples(block)
        if total + len(block) > limit:  # the header under-declared its length (Ogg page positions are the writer's)
            raise ClipRefused("over_long", limit=limits.max_seconds)
        if total + len(block) > len(mono):
            mono = np.concatenate([mono[:total], np.empty(min(2 * len(mono), limit + 1) - total, np.float32)])
        # the float32 mean over channels, row by row: the same numbers as the official np.mean(audio, axis=-1)
        np.mean(block, axis=-1, dtype=np.float32, out=mono[total : total + len(block)])
        total += len(block)
    if total == 0:
        raise ClipRefused("no_samples")
    if total < f.frames:
        raise ClipRefused("truncated")
    mono = mono[:total]
    return np.clip(mono, -1.0, 1.0, out=mono)


def check_samples(block: np.ndarray) -> None:
    """Before the mean: +3e38 and -3e38 in two channels would cancel, and their sum overflows."""
    if not np.isfinite(block).all():
        raise ClipRefused("non_finite")
    peak = float(np.abs(block).max())
    if peak > OVERSHOOT_CLIP:
        raise ClipRefused("out_of_range", peak=peak)


def resample_to_model_rate(mono: np.ndarray, rate: int) -> np.ndarray:
    """soxr HQ (what librosa.resample's default "soxr_hq" calls), then zero-padded or cut to ceil(N x ratio) computed
    the way librosa does (float ratio first): soxr alone is one sample short for about half of all lengths at 44.1,
    22.05, 32 and 11.025 kHz, which shifts the last reference-code frame."""
    if rate == MODEL_RATE:
        return mono
    import soxr

    size = int(np.ceil(len(mono) * (float(MODEL_RATE) / rate)))
    out = soxr.resample(mono, rate, MODEL_RATE, quality="HQ").astype(np.float32, copy=False)
    del mono  # the caller keeps no reference: the source-rate clip is freed before the padded copy is made
    if len(out) >= size:
        return out[:size]
    return np.concatenate([out, np.zeros(size - len(out), dtype=np.float32)])


def check_voice(audio: np.ndarray, limits: ClipLimits) -> float:
    """Seconds of non-silent audio (20 ms windows louder than ``silence_dbfs``); refuses silence and too little."""
    window = int(WINDOW_SECONDS * MODEL_RATE)
    usable = len(audio) // window * window
    if usable == 0:
        raise ClipRefused("short", min_voiced=limits.min_voiced_seconds, voiced=0.0)
    frames = audio[:usable].reshape(-1, window)  # a view: no copy of the clip
    rms = np.sqrt(np.einsum("ij,ij->i", frames, frames) / window)
    threshold = 10 ** (limits.silence_dbfs / 20)
    voiced = float(np.count_nonzero(rms > threshold)) * WINDOW_SECONDS
    if voiced == 0:
        raise ClipRefused("silent")
    if voiced < limits.min_voiced_seconds:
        raise ClipRefused("short", min_voiced=limits.min_voiced_seconds, voiced=math.floor(voiced * 10) / 10)
    return voiced


def wav_data_shortfall(data: bytes) -> int:
    """Bytes missing from a RIFF/WAVE data chunk (0 when complete); libsndfile silently reads a cut WAV as shorter."""
    pos = 12
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        if chunk_id == b"data":
            if size in (0, 0xFFFFFFFF):  # streaming writers leave the size unset
                return 0
            return max(0, pos + 8 + size - len(data))
        pos += 8 + size + (size & 1)
    return 0
