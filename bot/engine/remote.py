"""`RemoteEngine`: the `Engine` seam over HTTP to `narrator serve` (or a vLLM-Omni server), for bots that render on
other machines (NARRATOR_ENGINE_URLS=url1,url2).

Each render goes to the server picked by the request's `route` (the guild id; `servers.ServerPool`), streaming
float32 PCM chunk by chunk as the server generates it. A server that cannot be reached, answers 5xx or is busy
(503) before any audio is skipped and the next one tried; one that fails after audio was heard ends that render
with an EngineError (a segment cannot be resumed elsewhere without repeating words); later renders go elsewhere.
The Identity Lock travels in every request to our server (`speaker` or `timbre`, `seed`, `language`, the exact
instruction), with `script: false`, so the server runs exactly the `engine.stream` call a local render would.

Blocking by design (the protocol's threading contract): one `httpx.Client`, shared by the compute threads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import numpy as np

from bot.engine import vllm_omni
from bot.engine.protocol import AudioFormat, Capabilities, CheckpointInfo, EngineError, SpeechRequest
from bot.engine.servers import Server, ServerPool

log = logging.getLogger(__name__)

KINDS = ("auto", "narrator", "vllm-omni")
CONNECT_TIMEOUT_S = 3.0
HEALTH_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class RemoteOptions:
    urls: tuple[str, ...]
    kind: str = "auto"  # auto: detected per server (GET /v1/narrator/info answers only on ours)
    api_key: str | None = None
    read_timeout_s: float = 60.0  # longest silence inside one response
    down_for_s: float = 15.0  # a failed server is skipped this long
    max_streams: int = 4  # renders this bot runs at once through this engine (its worker's slots)

    def __post_init__(self) -> None:
        if not self.urls:
            raise ValueError("RemoteEngine needs at least one server URL")
        if self.kind not in KINDS:
            raise ValueError(f"the engine kind must be one of {', '.join(KINDS)}, not {self.kind!r}")


class _Retry(Exception):
    """This server cannot take the request now; try the next one."""


class RemoteEngine:
    def __init__(self, options: RemoteOptions) -> None:
        self.options = options
        self.pool = ServerPool(list(options.urls), options.down_for_s)
        headers = {"Authorization": f"Bearer {options.api_key}"} if options.api_key else {}
        timeout = httpx.Timeout(connect=CONNECT_TIMEOUT_S, read=options.read_timeout_s, write=30.0, pool=30.0)
        self._http = httpx.Client(headers=headers, timeout=timeout, limits=httpx.Limits(max_connections=64))
        self._info: dict[str, Any] | None = None
        self._kind = options.kind
        self._checkpoints: dict[str, CheckpointInfo] = {}
        self._started = False
        self.audio = vllm_omni.AUDIO
        self.capabilities = Capabilities(speaker_encoder=False, voice_design=False, max_streams=options.max_streams)

    # -- lifecycle ---------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Probe every server; at least one must answer. States what a vLLM-Omni backend lacks."""
        if self._started:
            return
        for server in self.pool.servers:
            try:
                self._probe(server)
            except (httpx.HTTPError, _Retry, ValueError) as exc:
                self.pool.mark_down(server, str(exc))
                log.warning("speech server %s is not answering (%s); skipped until it does", server.url, exc)
        if self._kind == "auto":
            raise EngineError(
                f"no speech server answered at {', '.join(self.options.urls)}; start `narrator serve` there or fix "
                f"NARRATOR_ENGINE_URLS"
            )
        self._started = True
        log.info("remote engine (%s) on %d server(s): %s", self._kind, len(self.pool.servers),
                 ", ".join(f"{s.url} ({'up' if s.up else 'down'})" for s in self.pool.servers))  # fmt: skip
        if self._kind == "vllm-omni":
            log.warning("the vLLM-Omni backend lacks: %s", "; ".join(vllm_omni.LACKS))

    def _probe(self, server: Server) -> None:
        kind = self._kind if self._kind != "auto" else None
        if kind in (None, "narrator"):
            response = self._http.get(f"{server.url}/v1/narrator/info", timeout=HEALTH_TIMEOUT_S)
            if response.status_code == 200:
                self._adopt_narrator(server, response.json())
                return
            if kind == "narrator" or response.status_code in (401, 403):
                raise _Retry(_message(response))
        response = self._http.get(f"{server.url}/v1/models", timeout=HEALTH_TIMEOUT_S)
        if response.status_code != 200:
            raise _Retry(_message(response))
        models = [m["id"] for m in response.json().get("data", [])]
        if not models:
            raise ValueError("it serves no model")
        server.kind, self._kind = "vllm-omni", "vllm-omni"
        if self._info is None:
            self._info = {"custom_voice_model": models[0], "describe": {"device": "vllm-omni"}}
            self.audio = vllm_omni.AUDIO
            self.capabilities = replace(vllm_omni.CAPABILITIES, max_streams=self.options.max_streams)

    def _adopt_narrator(self, server: Server, info: dict[str, Any]) -> None:
        server.kind, self._kind = "narrator", "narrator"
        if self._info is not None:
            return
        self._info = info
        self.audio = AudioFormat(**info["audio"])
        caps = info["capabilities"]
        self.capabilities = Capabilities(
            speaker_encoder=caps["speaker_encoder"], voice_design=caps["voice_design"], seeds=caps["seeds"],
            max_streams=self.options.max_streams, notes=(*caps["notes"], "remote"),
        )  # fmt: skip
        checkpoint = CheckpointInfo(**{**info["checkpoint"], "speakers": tuple(info["checkpoint"]["speakers"]),
                                       "languages": tuple(info["checkpoint"]["languages"])})  # fmt: skip
        self._checkpoints[checkpoint.model] = checkpoint

    def close(self) -> None:
        self._http.close()

    # -- facts -------------------------------------------------------------------------------------------------------

    @property
    def kind(self) -> str:
        return self._kind

    @property
    def custom_voice_model(self) -> str:
        return self._require_info()["custom_voice_model"]

    @property
    def has_speaker_encoder(self) -> bool:
        return self.capabilities.speaker_encoder

    def describe(self) -> dict[str, Any]:
        info = self._info or {}
        remote = info.get("describe", {})
        return {
            "engine": "remote",
            "kind": self._kind,
            "urls": [s.url for s in self.pool.servers],
            "custom_voice_model": info.get("custom_voice_model"),
            "device": f"remote:{remote.get('device', '?')}",
            "dtype": remote.get("dtype", "?"),
        }

    def checkpoint(self, model: str | None = None) -> CheckpointInfo:
        name = model or self.custom_voice_model
        if name not in self._checkpoints:
            if self._kind == "vllm-omni":
                self._checkpoints[name] = self._vllm_checkpoint(name)
            else:
                data = self._call(None, "POST", "/v1/narrator/checkpoint", json={"model": name}).json()
                data.update(speakers=tuple(data["speakers"]), languages=tuple(data["languages"]))
                self._checkpoints[name] = CheckpointInfo(**data)
        return self._checkpoints[name]

    def _vllm_checkpoint(self, name: str) -> CheckpointInfo:
        voices = self._call(None, "GET", "/v1/audio/voices").json().get("voices", [])
        names = tuple(v if isinstance(v, str) else v.get("name", "") for v in voices)
        return CheckpointInfo(name, "custom_voice", names, ("auto",), True, 0)

    def speaker_row(self, model: str, speaker: str) -> np.ndarray:
        self._narrator_only("reading a speaker's embedding row")
        data = self._call(None, "POST", "/v1/narrator/speaker_row", json={"model": model, "speaker": speaker}).json()
        return np.asarray(data["vector"], dtype=np.float32)

    # -- rendering ---------------------------------------------------------------------------------------------------

    def stream(self, request: SpeechRequest, stop: Callable[[], bool]) -> Iterator[np.ndarray]:
        if request.ref_codes is not None:  # the speech API takes a clip, not codes: say so rather than drop them
            raise EngineError("in-context cloning runs on a local engine only; this remote engine cannot render it")
        if self._kind == "vllm-omni":
            body, width, dtype = vllm_omni.speech_body(request, self.custom_voice_model), 2, "<i2"
        else:
            body, width, dtype = _narrator_body(request), 4, "<f4"
        last_error = "no server was tried"
        for server in self.pool.order(request.route):
            heard = False
            try:
                with self._http.stream("POST", f"{server.url}/v1/audio/speech", json=body) as response:
                    self._check(server, response)
                    for chunk in _samples(response.iter_raw(), width, dtype):
                        if stop():
                            return
                        heard = True
                        yield chunk
                self.pool.mark_up(server)
                return
            except _Retry as exc:
                last_error = f"{server.url}: {exc}"
            except httpx.TransportError as exc:
                last_error = f"{server.url}: {exc.__class__.__name__} {exc}".strip()
                self.pool.mark_down(server, last_error)
                if heard:
                    raise EngineError(f"the speech server {server.url} stopped in the middle of a render; "
                                      f"the next render goes to another server") from exc  # fmt: skip
            log.warning("speech server %s skipped: %s", server.url, last_error)
        raise EngineError(f"no speech server could render this ({last_error}); check that `narrator serve` runs")

    def _check(self, server: Server, response: httpx.Response) -> None:
        """2xx: go on. 503 / 5xx / 429: this server cannot now (try the next). 4xx: the request is wrong anywhere."""
        if response.status_code < 300:
            return
        response.read()
        message = _message(response)
        if response.status_code >= 500 or response.status_code == 429:
            if response.status_code != 503:
                self.pool.mark_down(server, message)
            raise _Retry(f"HTTP {response.status_code}: {message}")
        raise EngineError(f"the speech server refused the request: {message}")

    # -- identities --------------------------------------------------------------------------------------------------

    def xvector(self, audio: np.ndarray, sample_rate: int) -> np.ndarray | None:
        if not self.capabilities.speaker_encoder:
            return None
        data = np.ascontiguousarray(audio, dtype="<f4").tobytes()
        response = self._call(None, "POST", f"/v1/narrator/xvector?sample_rate={int(sample_rate)}", content=data)
        vector = response.json()["vector"]
        return None if vector is None else np.asarray(vector, dtype=np.float32)

    def reference_codes(self, audio: np.ndarray, sample_rate: int) -> np.ndarray | None:
        return None  # in-context cloning is not offered through a remote engine (see `stream`)

    def design_clip(self, description: str, text: str, language: str, seed: int, max_frames: int) -> np.ndarray:
        self._narrator_only("designing a voice")
        body = {"description": description, "text": text, "language": language, "seed": seed, "max_frames": max_frames}
        response = self._call(None, "POST", "/v1/narrator/design", json=body)
        return np.frombuffer(response.content, dtype="<f4").astype(np.float32)

    # -- plumbing ----------------------------------------------------------------------------------------------------

    def _call(self, route: str | None, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One non-streaming request, with the same failover as renders."""
        last_error = "no server was tried"
        for server in self.pool.order(route):
            try:
                response = self._http.request(method, f"{server.url}{path}", **kwargs)
                self._check(server, response)
                return response
            except _Retry as exc:
                last_error = f"{server.url}: {exc}"
            except httpx.TransportError as exc:
                last_error = f"{server.url}: {exc.__class__.__name__}"
                self.pool.mark_down(server, last_error)
        raise EngineError(f"no speech server answered ({last_error}); check that `narrator serve` runs")

    def _narrator_only(self, what: str) -> None:
        if self._kind != "narrator":
            raise EngineError(f"{what} needs `narrator serve`; the {self._kind} backend cannot do it")

    def _require_info(self) -> dict[str, Any]:
        if self._info is None:
            raise EngineError("the remote engine is not started (no speech server answered yet)")
        return self._info


def _narrator_body(request: SpeechRequest) -> dict[str, Any]:
    return {
        "model": request.model,
        "input": request.text,
        "script": False,
        "speaker": request.speaker,
        "timbre": None if request.vector is None else list(request.vector),
        "instructions": request.instruct,
        "seed": request.seed,
        "language": request.language,
        "max_new_tokens": request.max_frames or None,
        "latency_critical": request.latency_critical,
        "response_format": "pcm_f32",
        "stream_format": "audio",
    }


def _samples(raw: Iterator[bytes], width: int, dtype: str) -> Iterator[np.ndarray]:
    """float32 chunks from a byte stream cut anywhere (a sample split across reads waits for its other half)."""
    rest = b""
    for data in raw:
        data = rest + data
        cut = len(data) - len(data) % width
        rest = data[cut:]
        if cut:
            samples = np.frombuffer(data[:cut], dtype=dtype)
            yield samples.astype(np.float32) / (32768.0 if width == 2 else 1.0)


def _message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    except ValueError:
        pass
    return f"HTTP {response.status_code}"
