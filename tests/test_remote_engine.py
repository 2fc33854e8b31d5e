"""RemoteEngine against two real `narrator serve` servers on 127.0.0.1 (tiny checkpoints): the same audio, vectors
and facts as the local engine, guilds spread by route, failed servers skipped; and against a vLLM-Omni conformance
fake built from its published API."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import httpx
import numpy as np
import pytest

from bot.engine.protocol import Engine, EngineError, SpeechRequest
from bot.engine.remote import RemoteEngine, RemoteOptions
from bot.engine.servers import ServerPool
from bot.serve.state import ServeConfig
from tests.serving import ServerThread, tiny_engine
from tests.vllm_omni_fake import MODEL, REQUESTS, build_fake

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def two_servers(tiny_custom_voice, tiny_base, tmp_path_factory):
    first = ServerThread(tiny_engine(tiny_custom_voice, tiny_base), ServeConfig(data_dir=tmp_path_factory.mktemp("a")))
    second = ServerThread(tiny_engine(tiny_custom_voice, tiny_base), ServeConfig(data_dir=tmp_path_factory.mktemp("b")))
    with first, second:
        yield first, second


def _speech_count(server: ServerThread) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    lines = [line for line in text.splitlines() if line.startswith('narrator_requests_total{route="/v1/audio/speech"')]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def _audio(engine, request: SpeechRequest) -> np.ndarray:
    return np.concatenate(list(engine.stream(request, lambda: False)))


def test_remote_render_equals_the_local_one(two_servers, tiny_custom_voice, tiny_base) -> None:
    remote = RemoteEngine(RemoteOptions(tuple(s.url for s in two_servers)))
    remote.start()
    local = tiny_engine(tiny_custom_voice, tiny_base)
    assert isinstance(remote, Engine) and remote.kind == "narrator"
    assert remote.custom_voice_model == local.custom_voice_model and remote.audio == local.audio
    assert remote.checkpoint() == local.checkpoint() and remote.has_speaker_encoder
    row = local.speaker_row(local.custom_voice_model, "serena")
    np.testing.assert_array_equal(remote.speaker_row(remote.custom_voice_model, "serena"), row)
    preset = SpeechRequest("A preset line.", local.custom_voice_model, speaker="serena", instruct="Sad.", seed=5,
                           max_frames=25, route="77")  # fmt: skip
    np.testing.assert_array_equal(_audio(remote, preset), _audio(local, preset))
    locked = SpeechRequest("A locked timbre.", local.custom_voice_model, vector=tuple(float(x) for x in row * 0.5),
                           seed=9, max_frames=20, latency_critical=False, route="78")  # fmt: skip
    np.testing.assert_array_equal(_audio(remote, locked), _audio(local, locked))
    clip = _audio(local, preset)
    np.testing.assert_allclose(remote.xvector(clip, 24_000), local.xvector(clip, 24_000), rtol=0, atol=0)
    remote.close()


def test_guilds_spread_by_route_and_stay_put(two_servers) -> None:
    pool = ServerPool([s.url for s in two_servers])
    firsts = [pool.order(str(guild))[0].url for guild in range(200)]
    share = firsts.count(two_servers[0].url) / len(firsts)
    assert 0.35 < share < 0.65  # both servers get guilds
    assert firsts == [pool.order(str(guild))[0].url for guild in range(200)]  # stable

    remote = RemoteEngine(RemoteOptions(tuple(s.url for s in two_servers)))
    remote.start()
    guild = next(g for g in range(200) if firsts[g] == two_servers[1].url)
    before = [_speech_count(s) for s in two_servers]
    for _ in range(2):
        _audio(remote, SpeechRequest("Hi.", remote.custom_voice_model, speaker="aiden", max_frames=5, route=str(guild)))
    after = [_speech_count(s) for s in two_servers]
    assert (after[0] - before[0], after[1] - before[1]) == (0, 2)
    remote.close()


def test_a_dead_server_is_skipped_and_all_dead_is_a_clear_error(tiny_custom_voice, tmp_path) -> None:
    alive = ServerThread(tiny_engine(tiny_custom_voice), ServeConfig(data_dir=tmp_path / "a"))
    doomed = ServerThread(tiny_engine(tiny_custom_voice), ServeConfig(data_dir=tmp_path / "b"))
    with alive, doomed:
        remote = RemoteEngine(RemoteOptions((doomed.url, alive.url), down_for_s=60))
        remote.start()
        pool = remote.pool
        guild = next(str(g) for g in range(100) if pool.order(str(g))[0].url == doomed.url)
        doomed.kill()
        request = SpeechRequest("Still heard.", remote.custom_voice_model, speaker="aiden", max_frames=8, route=guild)
        assert len(_audio(remote, request)) > 0  # retried on the other server
        assert not pool.servers[0].up and pool.order(guild)[0].url == alive.url  # skipped from now on
        alive.kill()
        with pytest.raises(EngineError, match="no speech server could render"):
            _audio(remote, request)
        remote.close()
    unreachable = RemoteEngine(RemoteOptions(("http://127.0.0.1:9",)))
    with pytest.raises(EngineError, match="NARRATOR_ENGINE_URLS"):
        unreachable.start()


class _RealTimeDevice:
    """The server's engine on a device that makes audio at real time (as a loaded GPU may): a long render is still
    being made when its server dies, instead of sitting whole in the loopback socket's buffers already."""

    def __init__(self, engine) -> None:
        self.engine = engine

    def __getattr__(self, name: str):
        return getattr(self.engine, name)

    def stream(self, request, stop):
        started, made = time.monotonic(), 0.0
        for chunk in self.engine.stream(request, stop):
            made += len(chunk) / self.engine.audio.sample_rate
            time.sleep(max(0.0, started + made - time.monotonic()))
            yield chunk


def test_a_server_dying_mid_render_fails_that_render_only(tiny_factory, tmp_path) -> None:
    checkpoint = tiny_factory("custom_voice", eos="never")  # renders run to max_frames: still going when killed
    endless = ServerThread(_RealTimeDevice(tiny_engine(checkpoint)), ServeConfig(data_dir=tmp_path))
    other = ServerThread(tiny_engine(checkpoint), ServeConfig(data_dir=tmp_path / "o"))
    with endless, other:
        remote = RemoteEngine(RemoteOptions((endless.url, other.url)))
        remote.start()
        guild = next(str(g) for g in range(100) if remote.pool.order(str(g))[0].url == endless.url)
        long_text = "On and on the story goes, and nobody knows where it ends. " * 6  # a render of many seconds
        request = SpeechRequest(long_text, remote.custom_voice_model, speaker="aiden", max_frames=2000, route=guild)
        stream = remote.stream(request, lambda: False)
        assert len(next(stream)) > 0
        threading.Thread(target=endless.kill).start()
        with pytest.raises(EngineError, match="stopped in the middle"):
            for _ in stream:
                pass
        later = SpeechRequest("Next render.", remote.custom_voice_model, speaker="aiden", max_frames=5, route=guild)
        assert len(_audio(remote, later)) > 0  # went to the other server
        remote.close()


def test_a_refused_request_is_an_engine_error_with_the_servers_sentence(two_servers) -> None:
    remote = RemoteEngine(RemoteOptions((two_servers[0].url,)))
    remote.start()
    with pytest.raises(EngineError, match="There is no voice 'nobody' here"):
        _audio(remote, SpeechRequest("x", remote.custom_voice_model, speaker="nobody"))
    remote.close()


# -- vLLM-Omni ---------------------------------------------------------------------------------------------------------
@pytest.fixture
def vllm_fake():
    from aiohttp import web

    holder: dict = {}
    ready = threading.Event()

    async def main() -> None:
        app = build_fake()
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        holder.update(url=f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}", app=app,
                      stop=asyncio.Event(), loop=asyncio.get_running_loop())  # fmt: skip
        ready.set()
        await holder["stop"].wait()
        await runner.cleanup()

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    ready.wait(30)
    yield holder
    holder["loop"].call_soon_threadsafe(holder["stop"].set)
    thread.join(10)


def test_vllm_omni_backend_uses_documented_fields_and_states_what_it_lacks(vllm_fake, caplog) -> None:
    remote = RemoteEngine(RemoteOptions((vllm_fake["url"],)))
    with caplog.at_level(logging.WARNING, logger="bot.engine.remote"):
        remote.start()
    assert remote.kind == "vllm-omni" and remote.custom_voice_model == MODEL
    assert "no seeds" in caplog.text and "drift guard" in caplog.text
    assert not remote.capabilities.speaker_encoder and not remote.capabilities.seeds
    assert remote.xvector(np.zeros(24_000, np.float32), 24_000) is None
    assert "serena" in remote.checkpoint().speakers
    request = SpeechRequest("Hello from vLLM.", MODEL, language="english", speaker="serena", instruct="Happy.",
                            max_frames=50)  # fmt: skip
    audio = _audio(remote, request)
    assert audio.dtype == np.float32 and len(audio) == int(len(request.text) / 15.0 * 24_000)
    (sent,) = vllm_fake["app"][REQUESTS]
    assert sent["voice"] == "serena" and sent["language"] == "English" and sent["instructions"] == "Happy."
    assert sent["stream_format"] == "audio" and sent["response_format"] == "pcm" and sent["max_new_tokens"] == 50
    with pytest.raises(EngineError, match="x-vector"):
        _audio(remote, SpeechRequest("x", MODEL, vector=(0.1,) * 8))
    with pytest.raises(EngineError, match="narrator serve"):
        remote.design_clip("warm", "hi", "auto", 0, 10)
    remote.close()
