"""In-context cloning (ICL) through `POST /v1/audio/speech`: `ref_audio` + `ref_text` on the Base checkpoint render
exactly what the in-process engine renders for the same clip, transcript and seed; reference clips pass the bot's
hostile-input intake and every refusal is one OpenAI-style sentence."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.clips import voiced_wav_bytes
from tests.serving import ServerThread, tiny_engine

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.timeout(300)]
TEXT = "Words in the cloned voice."
REF_TEXT = "hello there, this is me"
CLIP = voiced_wav_bytes(1.5)


@pytest.fixture(scope="module")
def server(tiny_custom_voice, tiny_base, tmp_path_factory):
    from bot.serve.state import ServeConfig

    config = ServeConfig(data_dir=tmp_path_factory.mktemp("serve-icl"), max_streams=2, max_new_tokens=200,
                         max_body_bytes=4 * 1024 * 1024)  # fmt: skip
    with ServerThread(tiny_engine(tiny_custom_voice, tiny_base), config) as running:
        yield running


def _post(server, body) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/audio/speech", json=body, timeout=120)


def _data_url(data: bytes) -> str:
    return "data:audio/wav;base64," + base64.b64encode(data).decode()


def _one_sentence(response: httpx.Response) -> dict:
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    message = error["message"]
    assert message.endswith(".") and "\n" not in message and ". " not in message, message
    return error


def _icl_body(**extra) -> dict:
    return {"input": TEXT, "task_type": "Base", "ref_audio": _data_url(CLIP), "ref_text": REF_TEXT, "seed": 5,
            "script": False, "response_format": "pcm_f32", "max_new_tokens": 24, **extra}  # fmt: skip


def _local_render(engine, request) -> np.ndarray:
    return np.concatenate(list(engine.stream(request, lambda: False)))


def test_icl_over_http_equals_the_in_process_engine_render(server, tiny_custom_voice, tiny_base) -> None:
    from bot.engine.protocol import SpeechRequest
    from bot.services.clips import ClipLimits, decode_reference

    icl = _post(server, _icl_body())
    assert icl.status_code == 200, icl.text
    heard = np.frombuffer(icl.content, "<f4")
    assert len(heard) > 0

    local = tiny_engine(tiny_custom_voice, tiny_base)
    clip = decode_reference(CLIP, "ref.wav", ClipLimits())  # the intake's in-process twin: the same 24 kHz clip
    vector = tuple(float(x) for x in local.xvector(clip.audio, clip.sample_rate))
    codes = local.reference_codes(clip.audio, clip.sample_rate)
    assert codes.shape == (-(-len(clip.audio) // 1920), 16)
    request = SpeechRequest(TEXT, str(tiny_base), vector=vector, seed=5, max_frames=24,
                            ref_codes=tuple(map(tuple, codes.tolist())), ref_text=REF_TEXT)  # fmt: skip
    np.testing.assert_array_equal(heard, _local_render(local, request))

    # The reference codes and transcript condition the render: without them the same Base voice sounds otherwise.
    plain = SpeechRequest(TEXT, str(tiny_base), vector=vector, seed=5, max_frames=24)
    assert not np.array_equal(heard, _local_render(local, plain))


def test_x_vector_only_mode_differs_from_icl(server) -> None:
    icl = _post(server, _icl_body())
    timbre_only = _post(server, _icl_body(x_vector_only_mode=True))
    assert icl.status_code == timbre_only.status_code == 200
    assert len(timbre_only.content) > 0 and timbre_only.content != icl.content


def test_icl_in_script_mode_and_as_a_wav_file(server) -> None:
    """OpenAI clients send no `script`: the narrator renders the identity, ICL reference included."""
    response = _post(server, _icl_body(script=True, response_format="wav", input="One line. And [Calm] another."))
    assert response.status_code == 200, response.text
    audio, rate = sf.read(io.BytesIO(response.content), dtype="float32")
    assert rate == 24_000 and len(audio) > 0


def _wav(audio: np.ndarray, rate: int) -> bytes:
    out = io.BytesIO()
    sf.write(out, audio, rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


def _tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32)
    return np.repeat(wave[:, None], channels, axis=1) if channels > 1 else wave


BAD_CLIPS = {
    "mp3": (b"ID3\x04\x00" + b"\x00" * 200, "MP3"),
    "not audio": (b"hello, this is not a sound file at all", "not a sound file"),
    "three channels": (_wav(_tone(1.5, 16_000, 3), 16_000), "3 audio channels"),
    "96 kHz": (_wav(_tone(1.5, 96_000), 96_000), "96000 Hz"),
    "too long": (_wav(_tone(61.0, 8_000), 8_000), "too long"),
    "silent": (_wav(np.zeros(24_000, np.float32), 24_000), "silent"),
}


@pytest.mark.parametrize("case", list(BAD_CLIPS))
def test_a_bad_reference_clip_is_one_400_sentence(server, case) -> None:
    data, said = BAD_CLIPS[case]
    response = _post(server, _icl_body(ref_audio=_data_url(data)))
    assert response.status_code == 400
    error = _one_sentence(response)
    assert error["param"] == "ref_audio" and error["code"] == "bad_audio" and said in error["message"]


def test_icl_without_ref_text_is_refused_and_x_vector_only_needs_none(server) -> None:
    missing = _post(server, _icl_body(ref_text=None))
    assert missing.status_code == 400
    error = _one_sentence(missing)
    assert error["param"] == "ref_text" and error["code"] == "missing_ref_text"
    assert _post(server, _icl_body(ref_text=None, x_vector_only_mode=True)).status_code == 200
    inferred = {k: v for k, v in _icl_body(ref_text=None).items() if k != "task_type"}  # Base is inferred (vLLM-Omni)
    assert _one_sentence(_post(server, inferred))["param"] == "ref_text"


def test_a_voice_upload_goes_through_the_same_intake(server) -> None:
    files = {"audio_sample": ("a.mp3", BAD_CLIPS["mp3"][0])}
    response = httpx.post(f"{server.url}/v1/audio/voices", files=files, data={"name": "reader", "consent": "yes"})
    assert response.status_code == 400
    assert _one_sentence(response)["param"] == "audio_sample"


def test_an_icl_identity_needs_its_transcript_and_a_remote_engine_refuses_icl() -> None:
    from bot.engine.protocol import EngineError, SpeechRequest
    from bot.engine.remote import RemoteEngine, RemoteOptions
    from bot.narration.identity import Identity

    with pytest.raises(ValueError, match="transcript"):
        Identity("c", "cloned", "base", vector=(0.1, 0.2), ref_codes=((1,) * 16,))
    remote = RemoteEngine(RemoteOptions(urls=("http://127.0.0.1:9",)))
    request = SpeechRequest("x", "base", vector=(0.1,), ref_codes=((1,) * 16,), ref_text="y")
    with pytest.raises(EngineError, match="in-context"):
        next(remote.stream(request, lambda: False))
