"""The engine seam: "a speech segment + a locked identity -> a stream of 24 kHz chunks", plus x-vectors and designs.

Every method here is blocking and runs on the inference worker's compute thread (never on the event loop). The
render layer (`render.py`) only sees the `Engine` protocol, so a remote engine (an inference server) can replace
`LocalEngine` later without touching the render, the masters or the bot.

`LocalEngine` drives our `qwen_tts` package. Checkpoints load lazily, once each, on first use: the CustomVoice model
for every render, the Base model only for x-vectors (cloning, designing, the drift guard), the VoiceDesign model only
for designing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from bot.narration.identity import Identity

log = logging.getLogger(__name__)

SAMPLE_RATE = 24000
SAMPLES_PER_FRAME = 1920
FRAME_RATE = 12.5


@dataclass(frozen=True)
class EngineRequest:
    text: str
    identity: Identity
    instruct: str | None  # delivery only; the timbre comes from the identity
    seed: int
    max_frames: int  # hard cap on 80 ms frames (long generations run on; reference §7)
    latency_critical: bool = True  # nothing is playing yet: start with small chunks (else: big ones, cheaper)


class Engine(Protocol):
    sample_rate: int

    def stream(self, request: EngineRequest, stop: Callable[[], bool]) -> Iterator[np.ndarray]:
        """(n,) float32 24 kHz chunks while frames are generated; ends early once `stop()` is true."""
        ...

    def xvector(self, audio: np.ndarray, sample_rate: int) -> np.ndarray | None:
        """(hidden,) float32 x-vector of `audio`, or None when the engine has no speaker encoder."""
        ...

    def design_clip(self, description: str, text: str, language: str, seed: int, max_frames: int) -> np.ndarray:
        """(n,) float32 24 kHz anchor clip of `text` spoken by a voice designed from `description`."""
        ...

    def describe(self) -> dict[str, Any]:
        """Models, device and dtype, for sidecars and the ETA key."""
        ...

    @property
    def custom_voice_model(self) -> str: ...

    @property
    def has_speaker_encoder(self) -> bool:
        """Whether `xvector` works (a Base checkpoint is configured); the drift guard needs it."""
        ...


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    names = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
    if dtype not in names:
        raise ValueError(f"dtype must be auto or one of {sorted(names)}, got {dtype!r}")
    return names[dtype]


class LocalEngine:
    """Our `qwen_tts` on this machine's device. Use from one thread at a time (the worker's compute thread)."""

    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        custom_voice_model: str,
        *,
        base_model: str | None = None,
        design_model: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        first_chunk_frames: int = 2,
        chunk_frames: int = 16,
        max_loaded: int = 4,
    ) -> None:
        if max_loaded < 1:
            raise ValueError(f"max_loaded must be >= 1 checkpoint, got {max_loaded}")
        if first_chunk_frames < 1 or chunk_frames < 1:
            raise ValueError(f"chunk sizes must be >= 1 frame, got {first_chunk_frames} and {chunk_frames}")
        self._custom_voice_model = str(custom_voice_model)
        self.base_model = None if base_model is None else str(base_model)
        self.design_model = None if design_model is None else str(design_model)
        self.device_name = device
        self.dtype_name = dtype
        self.first_chunk_frames = first_chunk_frames
        self.chunk_frames = chunk_frames
        self.max_loaded = max_loaded
        self._models: OrderedDict[str, Any] = OrderedDict()  # least recently used first
        self._load_lock = threading.Lock()  # loading is the one thing two threads might race on

    @property
    def custom_voice_model(self) -> str:
        return self._custom_voice_model

    @property
    def has_speaker_encoder(self) -> bool:
        return self.base_model is not None

    @property
    def device(self) -> str:
        return resolve_device(self.device_name)

    def describe(self) -> dict[str, Any]:
        return {
            "engine": "local",
            "custom_voice_model": self.custom_voice_model,
            "base_model": self.base_model,
            "design_model": self.design_model,
            "device": self.device,
            "dtype": str(resolve_dtype(self.dtype_name, self.device)).removeprefix("torch."),
        }

    def model(self, name: str):
        """The loaded `QwenTTS` for checkpoint `name`: loaded on first use; beyond `max_loaded` checkpoints (say,
        many fine-tuned voices) the least recently used one is dropped to free its memory."""
        with self._load_lock:
            if name not in self._models:
                self._evict(self.max_loaded - 1)
                self._models[name] = self._load(name)
            self._models.move_to_end(name)
            return self._models[name]

    def _load(self, name: str):
        from qwen_tts import QwenTTS

        device = self.device
        started = time.perf_counter()
        tts = QwenTTS.from_pretrained(name, device=device, dtype=resolve_dtype(self.dtype_name, device))
        log.info("loaded %s (%s) on %s in %.1f s", name, tts.model_type, device, time.perf_counter() - started)
        if tts.model_type == "custom_voice" and not tts.supports_instruct:
            log.warning("%s does not take instructions: emotion tags will not change the delivery", name)
        return tts

    def _evict(self, keep: int) -> None:
        while len(self._models) > keep:
            name, _ = self._models.popitem(last=False)
            log.info("unloaded %s (keeping at most %d checkpoints)", name, self.max_loaded)
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    def loaded(self) -> list[str]:
        return list(self._models)

    def speakers(self, model: str | None = None) -> list[str]:
        return self.model(model or self.custom_voice_model).speakers

    # -- rendering ---------------------------------------------------------------------------------------------------

    def stream(self, request: EngineRequest, stop: Callable[[], bool]) -> Iterator[np.ndarray]:
        import torch

        tts = self.model(request.identity.model)
        synth = self._synthesis_request(tts, request)
        generator = torch.Generator(device=tts.device).manual_seed(request.seed)
        decoder = tts.codec.stream_decoder()
        pending: list[torch.Tensor] = []
        size = self.first_chunk_frames if request.latency_critical else self.chunk_frames
        # No inference_mode block here: it would leak into the caller across yields; qwen_tts's frame loop and the
        # streaming decoder disable autograd themselves.
        for codes in tts.generate_codes(synth, generator):
            if stop():
                return
            pending.append(codes)
            if len(pending) >= size:
                yield self._decode(tts, decoder, pending)
                # Small first chunks for latency, then doubling up to chunk_frames: once playback has a head start,
                # fewer and larger decoder pushes cost less (the stop check stays per frame either way).
                pending, size = [], min(2 * size, self.chunk_frames)
        if pending and not stop():
            yield self._decode(tts, decoder, pending)

    @staticmethod
    def _decode(tts, decoder, frames: list) -> np.ndarray:
        import torch

        audio = decoder.push(torch.stack(frames).to(tts.codec.device))  # (n * 1920,)
        return audio.detach().float().cpu().numpy()

    @staticmethod
    def _synthesis_request(tts, request: EngineRequest):
        import torch

        from qwen_tts import SynthesisRequest

        identity = request.identity
        vector = None
        if identity.vector is not None:
            vector = torch.tensor(identity.vector, dtype=torch.float32, device=tts.device)
        return SynthesisRequest(
            request.text,
            language=identity.language,
            speaker=identity.speaker,
            speaker_vector=vector,
            instruct=request.instruct if tts.supports_instruct else None,  # 0.6B: dropped (warned once at load)
            sampling=tts.default_sampling(),
            max_frames=request.max_frames,
        )

    # -- identities --------------------------------------------------------------------------------------------------

    def xvector(self, audio: np.ndarray, sample_rate: int) -> np.ndarray | None:
        if self.base_model is None:
            return None
        import torch

        with torch.inference_mode():
            vector = self.model(self.base_model).speaker_embedding(np.asarray(audio, dtype=np.float32), sample_rate)
        return vector.detach().float().cpu().numpy()

    def design_clip(self, description: str, text: str, language: str, seed: int, max_frames: int) -> np.ndarray:
        if self.design_model is None:
            raise ValueError("designing a voice needs a VoiceDesign checkpoint: set NARRATOR_DESIGN_MODEL")
        import torch

        from qwen_tts import SynthesisRequest

        tts = self.model(self.design_model)
        synth = SynthesisRequest(
            text, language=language, instruct=description, sampling=tts.default_sampling(), max_frames=max_frames
        )
        generator = torch.Generator(device=tts.device).manual_seed(seed)
        with torch.inference_mode():
            return tts.synthesize(synth, generator)
