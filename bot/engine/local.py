"""`LocalEngine`: the `Engine` seam over our `qwen_tts` on this machine's device (one engine per GPU).

`start()` loads every configured checkpoint (CustomVoice for every render, Base for x-vectors, VoiceDesign for
designs) and warms each up with one short generation, so the first `/say` pays no load time; the log says what
loaded, where, and how long it took. A checkpoint needed later (a fine-tuned voice's own) loads on first use; beyond
`max_loaded` the least recently used one is dropped.

With `max_streams > 1` every render of a checkpoint is a row of that checkpoint's `qwen_tts.batching.BatchEngine`
(continuous batching: rows join at a frame boundary and leave at once; each keeps its own seed, so its audio does not
depend on its neighbours); with 1 a render runs the model directly on its caller's thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from bot.engine.options import EngineOptions
from bot.engine.protocol import AudioFormat, Capabilities, CheckpointInfo, EngineError, SpeechRequest

log = logging.getLogger(__name__)

WARM_UP_TEXT = "Hello."
WARM_UP_FRAMES = 4


def resolve_device(device: str) -> str:
    """`auto` -> cuda when there is one, else cpu; a device this machine lacks is an EngineError naming it."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device != "cpu" and not device.startswith("cuda"):
        raise EngineError(f"NARRATOR_DEVICE must be auto, cpu, cuda or cuda:N, not {device!r}")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise EngineError(f"NARRATOR_DEVICE is {device} but torch sees no CUDA GPU here; use auto or cpu")
        index = device.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise EngineError(f"NARRATOR_DEVICE is {device} but this machine has {torch.cuda.device_count()} GPU(s)")
    return device


def resolve_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    names = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
    if dtype not in names:
        raise EngineError(f"NARRATOR_DTYPE must be auto or one of {', '.join(sorted(names))}, not {dtype!r}")
    return names[dtype]


class LocalEngine:
    """Our `qwen_tts` on this machine. Thread-safe: loading is locked; generation steps run on the callers' threads."""

    def __init__(self, options: EngineOptions) -> None:
        self.options = options
        self._models: OrderedDict[str, Any] = OrderedDict()  # least recently used first
        self._batchers: dict[str, Any] = {}  # checkpoint -> its BatchEngine (max_streams > 1)
        self._load_lock = threading.RLock()  # loading is the one thing two threads might race on
        self.capabilities = Capabilities(
            speaker_encoder=options.base_model is not None,
            voice_design=options.design_model is not None,
            max_streams=options.max_streams,
        )

    # -- facts -------------------------------------------------------------------------------------------------------

    @property
    def custom_voice_model(self) -> str:
        return self.options.custom_voice_model

    @property
    def base_model(self) -> str | None:
        return self.options.base_model

    @property
    def design_model(self) -> str | None:
        return self.options.design_model

    @property
    def has_speaker_encoder(self) -> bool:
        return self.capabilities.speaker_encoder

    @property
    def device(self) -> str:
        return resolve_device(self.options.device)

    @property
    def audio(self) -> AudioFormat:
        codec = self.model(self.custom_voice_model).codec.config
        return AudioFormat(codec.output_sample_rate, codec.decode_upsample_rate, codec.frame_rate)

    def describe(self) -> dict[str, Any]:
        return {
            "engine": "local",
            "custom_voice_model": self.custom_voice_model,
            "base_model": self.base_model,
            "design_model": self.design_model,
            "device": self.device,
            "dtype": str(resolve_dtype(self.options.dtype, self.device)).removeprefix("torch."),
        }

    def checkpoint(self, model: str | None = None) -> CheckpointInfo:
        name = model or self.custom_voice_model
        tts = self.model(name)
        return CheckpointInfo(
            model=name,
            model_type=tts.model_type,
            speakers=tuple(tts.speakers),
            languages=tuple(tts.languages),
            supports_instruct=tts.supports_instruct,
            hidden_size=tts.hidden_size,
        )

    def speakers(self, model: str | None = None) -> list[str]:
        return list(self.checkpoint(model).speakers)

    def speaker_row(self, model: str, speaker: str) -> np.ndarray:
        return self.model(model).speaker_row(speaker).detach().float().cpu().numpy()

    # -- lifecycle ---------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Load and warm up every configured checkpoint (errors name the checkpoint and what to do)."""
        started = time.perf_counter()
        for name in self._configured():
            self.model(name)
            if self.options.warm_up:
                self._warm_up(name)
        log.info(
            "engine on %s ready in %.1f s: %s", self.device, time.perf_counter() - started, ", ".join(self.loaded())
        )

    def close(self) -> None:
        with self._load_lock:
            self._evict(0)

    @property
    def batching(self) -> bool:
        return self.options.max_streams > 1

    def batcher(self, name: str):
        """The `BatchEngine` serving checkpoint `name` (made, and warmed when asked, on first use)."""
        tts = self.model(name)
        with self._load_lock:
            if name not in self._batchers:
                from qwen_tts.batching import BatchEngine

                engine = BatchEngine(tts, max_rows=self.options.max_streams,
                                     first_chunk_frames=self.options.first_chunk_frames,
                                     max_chunk_frames=self.options.chunk_frames)  # fmt: skip
                if self.options.warm_up:
                    log.info("%s: batch of %d rows warmed (compiled: %s) in %.1f s", name, engine.max_rows,
                             engine.compiled, engine.warm_up())  # fmt: skip
                self._batchers[name] = engine
            return self._batchers[name]

    def _configured(self) -> list[str]:
        names = [self.custom_voice_model, self.base_model, self.design_model]
        return [n for n in dict.fromkeys(names) if n is not None]

    def _warm_up(self, name: str) -> None:
        import torch

        tts = self.model(name)
        if self.batching and tts.model_type == "custom_voice":
            self.batcher(name)  # compiles the decode step per batch bucket (speed path), never inside a render
        started = time.perf_counter()
        if tts.model_type == "base":
            self.xvector(np.zeros(tts.sample_rate, dtype=np.float32), tts.sample_rate)
        else:
            speaker = tts.speakers[0] if tts.speakers else None
            instruct = "Calm." if tts.model_type == "voice_design" else None
            synth = self._synthesis(tts, WARM_UP_TEXT, "auto", speaker, None, instruct, WARM_UP_FRAMES)
            with torch.inference_mode():
                tts.synthesize(synth, torch.Generator(device=tts.device).manual_seed(0))
        log.info("warmed up %s in %.2f s", name, time.perf_counter() - started)

    def model(self, name: str):
        """The loaded `QwenTTS` for checkpoint `name`: loaded on first use; beyond `max_loaded` checkpoints (say,
        many fine-tuned voices) the least recently used one is dropped to free its memory."""
        with self._load_lock:
            if name not in self._models:
                self._evict(self.options.max_loaded - 1)
                self._models[name] = self._load(name)
            self._models.move_to_end(name)
            return self._models[name]

    def _load(self, name: str):
        from qwen_tts import QwenTTS

        device = self.device
        dtype = resolve_dtype(self.options.dtype, device)
        from qwen_tts.options import RuntimeOptions

        runtime = RuntimeOptions(
            device=device,
            dtype=dtype,
            compile=self.options.speed_path,
            eager=self.options.eager,
            cpu_threads=self.options.cpu_threads,
            compile_cache_dir=None if self.options.cache_dir is None else str(self.options.cache_dir),
        )
        started = time.perf_counter()
        try:
            tts = QwenTTS.from_pretrained(name, options=runtime)
        except (OSError, ValueError) as exc:
            raise EngineError(f"the checkpoint {name} cannot be loaded: {exc}") from exc
        log.info("loaded %s (%s) on %s, %s, in %.1f s", name, tts.model_type, device, str(dtype).removeprefix("torch."),
                 time.perf_counter() - started)  # fmt: skip
        if tts.model_type == "custom_voice" and not tts.supports_instruct:
            log.warning("%s does not take instructions: emotion tags will not change the delivery", name)
        return tts

    def _evict(self, keep: int) -> None:
        while len(self._models) > keep:
            name, _ = self._models.popitem(last=False)
            batcher = self._batchers.pop(name, None)
            if batcher is not None:
                batcher.close()
            log.info("unloaded %s (keeping at most %d checkpoints)", name, self.options.max_loaded)
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    def loaded(self) -> list[str]:
        return list(self._models)

    def speed_path_requested(self, name: str | None = None) -> bool:
        """Whether the loaded checkpoint was asked for the speed path (NARRATOR_COMPILE reaches the model)."""
        return bool(self.model(name or self.custom_voice_model).options.compile)

    # -- rendering ---------------------------------------------------------------------------------------------------

    def stream(self, request: SpeechRequest, stop: Callable[[], bool]) -> Iterator[np.ndarray]:
        import torch

        tts = self.model(request.model)
        instruct = request.instruct if tts.supports_instruct else None  # 0.6B: dropped (warned once at load)
        synth = self._synthesis(tts, request.text, request.language, request.speaker, request.vector, instruct,
                                request.max_frames)  # fmt: skip
        if request.ref_codes is not None:  # ICL: qwen_tts checks the codes and the transcript (ValueError)
            synth.ref_codes, synth.ref_text = torch.tensor(request.ref_codes, dtype=torch.long), request.ref_text
        if self.batching:
            first = self.options.first_chunk_frames if request.latency_critical else self.options.chunk_frames
            stream = self.batcher(request.model).submit(synth, seed=request.seed, first_chunk_frames=first, stop=stop)
            try:
                yield from stream
            finally:
                stream.cancel()  # an abandoned attempt (drift-guard re-sample) leaves the batch at once
            return
        generator = torch.Generator(device=tts.device).manual_seed(request.seed)
        decoder = tts.codec.stream_decoder()
        if synth.ref_codes is not None:
            # The reference frames prime the decoder and their audio is dropped, as qwen_tts.stream does (the official
            # package decodes reference + new codes and cuts the reference part; without it the codec starts cold).
            decoder.push(synth.ref_codes.to(tts.codec.device))
        pending: list[torch.Tensor] = []
        size = self.options.first_chunk_frames if request.latency_critical else self.options.chunk_frames
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
                pending, size = [], min(2 * size, self.options.chunk_frames)
        if pending and not stop():
            yield self._decode(tts, decoder, pending)

    @staticmethod
    def _decode(tts, decoder, frames: list) -> np.ndarray:
        import torch

        audio = decoder.push(torch.stack(frames).to(tts.codec.device))  # (n * samples_per_frame,)
        return audio.detach().float().cpu().numpy()

    @staticmethod
    def _synthesis(tts, text, language, speaker, vector, instruct, max_frames):
        import torch

        from qwen_tts import SynthesisRequest

        tensor = None if vector is None else torch.tensor(vector, dtype=torch.float32, device=tts.device)
        return SynthesisRequest(
            text,
            language=language,
            speaker=speaker,
            speaker_vector=tensor,
            instruct=instruct,
            sampling=tts.default_sampling(),
            max_frames=max_frames or None,
        )

    # -- identities --------------------------------------------------------------------------------------------------

    def xvector(self, audio: np.ndarray, sample_rate: int) -> np.ndarray | None:
        if self.base_model is None:
            return None
        import torch

        tts = self.model(self.base_model)  # loaded outside inference mode: its weights must stay usable for ICL renders
        with torch.inference_mode():
            vector = tts.speaker_embedding(np.asarray(audio, dtype=np.float32), sample_rate)
        return vector.detach().float().cpu().numpy()

    def reference_codes(self, audio: np.ndarray, sample_rate: int) -> np.ndarray | None:
        """(frames, 16) codes of a reference clip from the Base checkpoint's codec (the one that renders ICL)."""
        if self.base_model is None:
            return None
        import torch

        tts = self.model(self.base_model)  # loaded outside inference mode, as in `xvector`
        with torch.inference_mode():
            codes = tts.codec.encode(np.asarray(audio, dtype=np.float32), sample_rate)
        return codes.detach().cpu().numpy()

    def design_clip(self, description: str, text: str, language: str, seed: int, max_frames: int) -> np.ndarray:
        if self.design_model is None:
            raise EngineError("designing a voice needs a VoiceDesign checkpoint: set NARRATOR_DESIGN_MODEL")
        import torch

        tts = self.model(self.design_model)
        synth = self._synthesis(tts, text, language, None, None, description, max_frames)
        generator = torch.Generator(device=tts.device).manual_seed(seed)
        with torch.inference_mode():
            return tts.synthesize(synth, generator)
