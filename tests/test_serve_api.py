"""`narrator serve` over real HTTP on 127.0.0.1 with our engine on tiny checkpoints: the real `openai` package for
the OpenAI shape, plain httpx for the extensions (SSE, voices, errors, auth, bounds, metrics)."""

from __future__ import annotations

import base64
import io
import json
import threading

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.clips import voiced_wav_bytes
from tests.serving import ServerThread, tiny_engine

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.timeout(300)]
KEY = "test-key"
RATE = 24_000


@pytest.fixture(scope="module")
def server(tiny_custom_voice, tiny_base, tmp_path_factory):
    from bot.serve.state import ServeConfig

    config = ServeConfig(data_dir=tmp_path_factory.mktemp("serve"), api_keys=(KEY,), max_input_chars=300,
                         max_streams=2, max_body_bytes=2 * 1024 * 1024, max_new_tokens=200)  # fmt: skip
    with ServerThread(tiny_engine(tiny_custom_voice, tiny_base), config) as running:
        yield running


def _post(server, body, key=KEY, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{server.url}/v1/audio/speech", json=body, headers=headers, timeout=120, **kwargs)


def _error(response: httpx.Response) -> dict:
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert error["message"].endswith(".") and "\n" not in error["message"]
    return error


def test_openai_package_streams_wav_and_pcm(server) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=f"{server.url}/v1", api_key=KEY)
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="serena", input="[Excited] Hello there! [Pause 0.3s] Bye.", response_format="wav"
    ) as response:
        data = b"".join(response.iter_bytes())
    audio, rate = sf.read(io.BytesIO(data), dtype="float32")
    assert rate == RATE and len(audio) > 0.3 * RATE
    silence = audio[int(0.05 * RATE) :]  # the 0.3 s pause is somewhere inside: a run of exact zeros
    assert np.max(np.convolve(silence == 0, np.ones(int(0.25 * RATE)), "valid")) >= int(0.25 * RATE)

    chunks = []
    with client.audio.speech.with_streaming_response.create(
        model="tts-1",
        voice="serena",
        input="Hello there, this is streamed.",
        response_format="pcm",
        extra_body={"seed": 3},
    ) as response:
        assert response.headers["content-type"] == "audio/pcm"
        chunks = list(response.iter_bytes())
    pcm = b"".join(chunks)
    assert len(pcm) % 2 == 0 and len(pcm) > RATE  # s16le, > 0.5 s
    assert len(chunks) > 1  # chunk by chunk, not one body at the end


def test_same_seed_same_audio_and_segment_mode_equals_the_engine(server, tiny_custom_voice) -> None:
    body = {"input": "Same words.", "voice": "aiden", "seed": 11, "response_format": "pcm_f32", "script": False,
            "instructions": "Calm.", "max_new_tokens": 30}  # fmt: skip
    first, second = _post(server, body), _post(server, body)
    assert first.status_code == 200 and first.content == second.content
    from bot.engine.protocol import SpeechRequest

    local = tiny_engine(tiny_custom_voice)
    request = SpeechRequest("Same words.", str(tiny_custom_voice), speaker="aiden", instruct="Calm.", seed=11,
                            max_frames=30)  # fmt: skip
    expected = np.concatenate(list(local.stream(request, lambda: False)))
    np.testing.assert_array_equal(np.frombuffer(first.content, "<f4"), expected)
    other = _post(server, {**body, "seed": 12})
    assert other.content != first.content


def test_sse_events_carry_base64_pcm_and_a_done_event(server) -> None:
    body = {"input": "Streaming events.", "voice": "serena", "response_format": "pcm", "stream": True}
    with httpx.stream("POST", f"{server.url}/v1/audio/speech", json=body, timeout=120,
                      headers={"Authorization": f"Bearer {KEY}"}) as response:  # fmt: skip
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert deltas and events[-1]["type"] == "speech.audio.done"
    pcm = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    assert events[-1]["usage"]["output_tokens"] == pytest.approx(len(pcm) / 2 / 1920, abs=1)


def test_whole_file_formats(server) -> None:
    for fmt, container in (("flac", "FLAC"), ("opus", "OGG"), ("mp3", "MP3")):
        response = _post(server, {"input": "Hi there.", "voice": "serena", "response_format": fmt})
        if fmt == "mp3" and response.status_code == 400:
            assert "mp3" in _error(response)["message"]  # this libsndfile cannot write MP3
            continue
        assert response.status_code == 200, response.text
        info = sf.info(io.BytesIO(response.content))
        assert info.format == container and info.samplerate in (RATE, 48_000)


@pytest.mark.parametrize(
    ("body", "param", "status"),
    [
        ({"input": "x", "speed": 1.5}, "speed", 400),
        ({"input": ""}, "input", 400),
        ({"input": "x" * 301}, "input", 400),
        ({"input": "x", "response_format": "aac"}, "response_format", 400),
        ({"input": "x", "response_format": "flac", "stream": True}, "response_format", 400),
        ({"input": "x", "voice": "nobody"}, "voice", 400),
        ({"input": "x", "model": "gpt-9"}, "model", 400),
        ({"input": "x", "language": "klingon"}, "language", 400),
        ({"input": "x", "timbre": [0.1, 0.2]}, "timbre", 400),
        ({"input": "[Pause 20s] x"}, "input", 400),
        ({"input": "x", "ref_audio": "https://example.com/a.wav"}, "ref_audio", 400),
        ({"input": "x", "max_new_tokens": 100000}, "max_new_tokens", 400),
        ({"input": "x", "task_type": "VoiceDesign", "instructions": "warm"}, "task_type", 400),
    ],
)
def test_bad_requests_get_one_openai_style_sentence(server, body, param, status) -> None:
    response = _post(server, body)
    assert response.status_code == status
    assert _error(response)["param"] == param


def test_auth_body_limit_and_unknown_routes(server) -> None:
    assert _error(_post(server, {"input": "x"}, key=None))["code"] == "invalid_api_key"
    assert _post(server, {"input": "x"}, key="wrong").status_code == 401
    assert httpx.get(f"{server.url}/health").status_code == 200  # probes need no key
    big = _post(server, {"input": "x", "ref_audio": "A" * (3 * 1024 * 1024)})
    assert big.status_code == 413 and _error(big)["code"] == "body_too_large"
    assert httpx.get(f"{server.url}/v1/nothing", headers={"Authorization": f"Bearer {KEY}"}).status_code == 404
    not_json = httpx.post(f"{server.url}/v1/audio/speech", content=b"{", headers={
        "Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})  # fmt: skip
    assert _error(not_json)["code"] == "bad_json"


def test_full_server_answers_503_with_retry_after(tiny_factory, tmp_path) -> None:
    """Two endless renders (a checkpoint that never says EOS, capped at 2048 frames) hold both stream slots while
    their clients read nothing; the third request is refused at once; once they hang up there is room again."""
    from bot.serve.state import ServeConfig

    endless = tiny_engine(tiny_factory("custom_voice", eos="never"))
    config = ServeConfig(data_dir=tmp_path, max_streams=2, max_new_tokens=2048)
    body = {"input": "Hold the line.", "voice": "aiden", "response_format": "pcm", "script": False,
            "max_new_tokens": 2048}  # fmt: skip
    with ServerThread(endless, config) as server:
        holders = [httpx.Client(timeout=120) for _ in range(2)]
        streams = [c.stream("POST", f"{server.url}/v1/audio/speech", json=body) for c in holders]
        readers = []  # kept: a dropped reader would close its response
        try:
            for stream in streams:
                readers.append(stream.__enter__().iter_raw())
                next(readers[-1])  # admitted, audio flowing; then nobody reads
            refused = httpx.post(f"{server.url}/v1/audio/speech", json={"input": "One more."}, timeout=60)
            assert refused.status_code == 503 and refused.headers["Retry-After"].isdigit()
            assert _error(refused)["code"] == "server_busy"
            assert httpx.get(f"{server.url}/health").json()["status"] == "busy"
        finally:
            for stream, client in zip(streams, holders, strict=True):
                stream.__exit__(None, None, None)
                client.close()
        for _ in range(100):  # the renders see their clients gone at the next frame
            if httpx.get(f"{server.url}/health").json()["streams"] == 0:
                break
            threading.Event().wait(0.1)
        short = {"input": "Now there is room.", "max_new_tokens": 5, "script": False}
        assert httpx.post(f"{server.url}/v1/audio/speech", json=short, timeout=60).status_code == 200


def test_voices_upload_use_list_delete_and_persist(server, tiny_custom_voice, tiny_base) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    url = f"{server.url}/v1/audio/voices"
    clip = voiced_wav_bytes(2.0)
    missing = httpx.post(url, headers=headers, files={"audio_sample": ("a.wav", clip)}, data={"name": "reader"})
    assert _error(missing)["param"] == "consent"
    made = httpx.post(url, headers=headers, files={"audio_sample": ("a.wav", clip)},
                      data={"name": "reader", "consent": "recorded-2026-12-01", "ref_text": "hello"})  # fmt: skip
    assert made.status_code == 201, made.text
    again = httpx.post(url, headers=headers, files={"audio_sample": ("a.wav", clip)},
                       data={"name": "reader", "consent": "yes"})  # fmt: skip
    assert again.status_code == 409
    listing = httpx.get(url, headers=headers).json()
    assert "reader" in listing["voices"] and "serena" in listing["voices"]
    assert listing["uploaded_voices"][0]["consent"] == "recorded-2026-12-01"

    spoken = _post(server, {"input": "In the uploaded voice. [@serena] And a preset.", "voice": "reader",
                            "response_format": "pcm"})  # fmt: skip
    assert spoken.status_code == 200 and len(spoken.content) > RATE

    from bot.serve.voices import VoiceStore

    assert VoiceStore(server.config.data_dir / "voices").get("READER") is not None  # on disk, any case
    assert httpx.delete(f"{url}/reader", headers=headers).status_code == 200
    assert httpx.delete(f"{url}/reader", headers=headers).status_code == 404
    assert _error(_post(server, {"input": "x", "voice": "reader"}))["code"] == "voice_not_found"


def test_ref_audio_clones_and_models_health_metrics(server) -> None:
    clip = "data:audio/wav;base64," + base64.b64encode(voiced_wav_bytes(1.5)).decode()
    cloned = _post(server, {"input": "Cloned.", "task_type": "Base", "ref_audio": clip, "ref_text": "hello",
                            "x_vector_only_mode": True, "response_format": "pcm"})  # fmt: skip
    assert cloned.status_code == 200 and len(cloned.content) > 0
    models = httpx.get(f"{server.url}/v1/models", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert models["object"] == "list" and all(m["object"] == "model" for m in models["data"])
    health = httpx.get(f"{server.url}/health").json()
    assert health["status"] == "ok" and health["max_streams"] == 2
    text = httpx.get(f"{server.url}/metrics").text
    for name in ("narrator_requests_total", "narrator_errors_total", "narrator_queue_depth", "narrator_batch_rows",
                 "narrator_first_audio_seconds_bucket", "narrator_real_time_factor_count"):  # fmt: skip
        assert name in text
    assert 'narrator_requests_total{route="/v1/audio/speech",status="200"}' in text
