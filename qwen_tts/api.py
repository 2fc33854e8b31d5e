"""``QwenTTS``: checkpoint in, 16-code frames and 24 kHz audio out.

    tts = QwenTTS.from_pretrained("dir-or-hub-id", options=RuntimeOptions(device="cpu", dtype=torch.float32))
    req = SynthesisRequest("Hello there.", language="english", speaker="vivian", instruct="calm")
    for codes in tts.generate_codes(req): ...          # (16,) int64 per frame, as soon as it is sampled
    for chunk in tts.stream(req): ...                  # float32 24 kHz audio, frame by frame
    wav = tts.synthesize(req)                          # equals the concatenated stream

``generate_codes([req1, req2])`` runs several requests as one left-padded batch and yields (B, 16) per step, with
-1 in the rows of requests that already ended (the codec's padding convention); it stops when all have ended.
Many independent requests at once (each with its own settings and seed, joining and leaving at any frame) go through
``qwen_tts.batching.BatchEngine(tts)`` instead.
A request's ``speaker_vector`` (any hidden-size vector, e.g. a Base checkpoint's x-vector or a preset speaker row)
takes the speaker position; with a named ``speaker`` too, the name still picks the dialect tag.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from qwen_tts.generate import Frame, generate_frames
from qwen_tts.options import RuntimeOptions, with_env
from qwen_tts.prompt import (
    Layout,
    TalkerInputs,
    build_layout,
    embed_layouts,
    resolve_language,
    resolve_speaker,
    supported_languages,
)
from qwen_tts.sampling import SamplingParams

log = logging.getLogger(__name__)

DEFAULT_MAX_CACHE_LEN = 4096


@dataclass
class SynthesisRequest:
    """One utterance to synthesise.

    ``ref_codes`` (T, 16) + ``ref_text`` select in-context cloning (Base only). ``non_streaming_mode`` None takes the
    official default: True for custom_voice / voice_design, False for base (one text token per frame).
    ``max_frames`` None runs until EOS or the cache is full.
    """

    text: str
    language: str = "auto"
    speaker: str | None = None
    speaker_vector: torch.Tensor | None = None
    instruct: str | None = None
    ref_codes: torch.Tensor | None = None
    ref_text: str | None = None
    sampling: SamplingParams = field(default_factory=SamplingParams)
    max_frames: int | None = None
    non_streaming_mode: bool | None = None


class QwenTTS:
    """A loaded Qwen3-TTS 12 Hz checkpoint: talker model, text tokenizer and codec."""

    def __init__(
        self,
        model,
        tokenizer,
        codec,
        generation_defaults=None,
        max_cache_len=DEFAULT_MAX_CACHE_LEN,
        options: RuntimeOptions | None = None,
    ):
        self.model = model
        self.options = (
            options if options is not None else RuntimeOptions(device=str(model.talker.codec_head.weight.device))
        )
        self.config = model.config
        self.tokenizer = tokenizer
        self.codec = codec
        self.generation_defaults = dict(generation_defaults or {})
        self.max_cache_len = min(max_cache_len, self.config.talker_config.max_position_embeddings)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        max_cache_len: int = DEFAULT_MAX_CACHE_LEN,
        load_codec_encoder: bool = True,
        cuda_graphs: bool | None = None,
        cpu_threads: int | None = None,
        options: RuntimeOptions | None = None,
    ) -> QwenTTS:
        """Load model, tokenizer, generation_config.json and speech_tokenizer/ (codec kept in fp32).

        ``options`` (``qwen_tts.options.RuntimeOptions``) says where and how the model runs; ``device``, ``dtype``,
        ``cpu_threads`` and ``cuda_graphs`` (the older name of ``compile``) override single fields of it. qwen_tts's
        own environment switches (``QWEN_TTS_EAGER``, ``QWEN_TTS_NO_COMPILE``, ``QWEN_TTS_CPU_THREADS``) are applied
        last, as kill switches; the result is ``tts.options``.
        """
        import json

        from qwen_tts.codec import Codec
        from qwen_tts.loading import load_model, resolve_checkpoint, verify_checkpoint
        from qwen_tts.tokenizer import TextTokenizer

        opts = options or RuntimeOptions()
        given = {"device": device, "dtype": dtype, "cpu_threads": cpu_threads, "compile": cuda_graphs}
        opts = with_env(opts.replace(**{k: v for k, v in given.items() if v is not None}))
        folder = verify_checkpoint(resolve_checkpoint(name_or_path))  # a broken folder fails before any model work
        model = load_model(folder, device=opts.device, dtype=opts.dtype)
        tokenizer = TextTokenizer.from_pretrained(folder)
        if len(tokenizer) > model.config.talker_config.text_vocab_size:
            raise ValueError(f"{folder}: the tokenizer has {len(tokenizer)} tokens, more than text_vocab_size")
        gen_path = folder / "generation_config.json"
        defaults = json.loads(gen_path.read_text(encoding="utf-8")) if gen_path.is_file() else {}
        codec = Codec.from_pretrained(folder, device=opts.device, load_encoder=load_codec_encoder)
        return cls(model, tokenizer, codec, defaults, max_cache_len, opts)

    # -- run-time switches -----------------------------------------------------------------------------------------
    @property
    def speed_path_active(self) -> bool:
        """True when generation through ``BatchEngine`` uses the compiled decode step (``options.compile``)."""
        return self.options.wants_compiled_step

    @property
    def cuda_graphs(self) -> bool:
        """The older name of ``speed_path_active`` (callers written before ``RuntimeOptions`` read it)."""
        return self.speed_path_active

    @property
    def cpu_threads(self) -> int | None:
        return self.options.cpu_threads

    # -- audio facts, from the codec's config ----------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    @property
    def samples_per_frame(self) -> int:
        return self.codec.samples_per_frame

    @property
    def frame_rate(self) -> float:
        return self.codec.frame_rate

    @property
    def num_code_groups(self) -> int:
        return self.config.talker_config.num_code_groups

    # -- facts about the checkpoint --------------------------------------------------------------------------------
    @property
    def model_type(self) -> str:
        return self.config.tts_model_type

    @property
    def speakers(self) -> list[str]:
        return sorted(self.config.talker_config.spk_id)

    @property
    def languages(self) -> list[str]:
        return supported_languages(self.config)

    @property
    def hidden_size(self) -> int:
        return self.config.talker_config.hidden_size

    @property
    def supports_instruct(self) -> bool:
        return self.config.supports_instruct

    @property
    def device(self) -> torch.device:
        return self.model.talker.codec_head.weight.device

    def default_sampling(self) -> SamplingParams:
        """The checkpoint's generation_config.json sampling settings."""
        return SamplingParams.from_generation_config(self.generation_defaults)

    def speaker_embedding(self, audio: np.ndarray, sr: int) -> torch.Tensor:
        """x-vector (hidden,) float32 of reference audio (Base checkpoints only)."""
        if self.model.speaker_encoder is None:
            raise ValueError(
                f"speaker_embedding needs a base checkpoint (it has the speaker encoder); this one is {self.model_type}"
            )
        from qwen_tts.speaker_encoder import speaker_embedding

        return speaker_embedding(self.model.speaker_encoder, audio, sr)

    def speaker_row(self, speaker: str) -> torch.Tensor:
        """The codec-embedding row of a preset speaker (hidden,) float32: a speaker_vector for identity locks."""
        name = resolve_speaker(self.config, speaker)
        row = self.model.talker.model.codec_embedding.weight[self.config.talker_config.spk_id[name]]
        return row.detach().float().cpu().clone()

    # -- prompts ---------------------------------------------------------------------------------------------------
    def layout(self, req: SynthesisRequest) -> Layout:
        """Validate ``req`` and build its prompt layout (ids per position)."""
        if not isinstance(req.text, str) or not req.text.strip():
            raise ValueError("text is empty: give at least one word to speak")
        cfg = self.config
        language = resolve_language(cfg, req.language)
        speaker = resolve_speaker(cfg, req.speaker)
        self._check_speaker_vector(req, speaker)
        instruct = req.instruct if req.instruct and req.instruct.strip() else None
        if instruct is not None and not self.supports_instruct:
            log.warning("instruct %r ignored: this %s %s checkpoint does not use instructions", instruct[:40],
                        cfg.tts_model_size, self.model_type)  # fmt: skip
            instruct = None
        ref_ids = self._check_reference(req)
        non_streaming = req.non_streaming_mode
        if non_streaming is None:
            non_streaming = self.model_type != "base"
        role, text_ids = self.tokenizer.target_ids(req.text)
        return build_layout(
            cfg, role, text_ids, language=language, speaker=speaker,
            has_speaker_vector=speaker is not None or req.speaker_vector is not None,
            instruct_ids=self.tokenizer.instruct_ids(instruct) if instruct else None,
            ref_ids=ref_ids, num_ref_frames=0 if req.ref_codes is None else int(req.ref_codes.shape[0]),
            non_streaming=non_streaming,
        )  # fmt: skip

    def _check_speaker_vector(self, req: SynthesisRequest, speaker: str | None) -> None:
        vec = req.speaker_vector
        if vec is not None and tuple(vec.shape) != (self.hidden_size,):
            raise ValueError(f"speaker_vector must have shape ({self.hidden_size},), got {tuple(vec.shape)}")
        if self.model_type == "custom_voice" and speaker is None and vec is None:
            raise ValueError(f"custom_voice checkpoints need a speaker (one of {self.speakers}) or a speaker_vector")
        if self.model_type == "base" and vec is None:
            raise ValueError("base checkpoints clone a voice: pass speaker_vector=tts.speaker_embedding(audio, sr)")

    def _check_reference(self, req: SynthesisRequest) -> list[int] | None:
        if req.ref_codes is None and req.ref_text is None:
            return None
        if self.model_type != "base":
            raise ValueError(f"ref_codes/ref_text (in-context cloning) need a base checkpoint, not {self.model_type}")
        if req.ref_codes is None or not req.ref_text or not req.ref_text.strip():
            raise ValueError("in-context cloning needs both ref_codes (T, 16) and its transcript ref_text")
        codes = req.ref_codes
        groups = self.config.talker_config.num_code_groups
        if codes.ndim != 2 or codes.shape[1] != groups or codes.shape[0] == 0:
            raise ValueError(f"ref_codes must have shape (T, {groups}) with T >= 1, got {tuple(codes.shape)}")
        if int(codes.min()) < 0 or int(codes.max()) >= self.config.talker_config.codebook_size:
            raise ValueError(f"ref_codes must be in [0, {self.config.talker_config.codebook_size})")
        return self.tokenizer.ref_ids(req.ref_text)

    @torch.no_grad()
    def talker_inputs(self, reqs: list[SynthesisRequest]) -> TalkerInputs:
        """Left-padded talker inputs for a batch of requests."""
        items = []
        for req in reqs:
            layout = self.layout(req)  # validates first
            vec = req.speaker_vector
            if vec is None and req.speaker:
                vec = self.model.talker.codec_embed(
                    torch.tensor(self.config.talker_config.spk_id[req.speaker.lower()], device=self.device)
                )
            items.append((layout, {"speaker_vector": vec, "ref_codes": req.ref_codes}))
        return embed_layouts(self.model.talker, self.config, items)

    # -- generation ------------------------------------------------------------------------------------------------
    def _frame_budget(self, reqs: list[SynthesisRequest], prompt_len: int) -> int:
        asked = [r.max_frames for r in reqs if r.max_frames is not None]
        default = int(self.generation_defaults.get("max_new_tokens", 8192)) - 1
        budget = max(asked) if len(asked) == len(reqs) else default
        room = self.max_cache_len - prompt_len - 1
        if room < 1:
            raise ValueError(
                f"the prompt has {prompt_len} positions and does not fit the cache of {self.max_cache_len} slots; "
                f"shorten the text, instruct or reference, or raise max_cache_len"
            )
        return max(1, min(budget, room))

    def frames(self, reqs: list[SynthesisRequest], generator: torch.Generator | None = None) -> Iterator[Frame]:
        """Low level: ``Frame`` objects (codes, active rows, talker hidden) for a batch of requests."""
        if not reqs:
            raise ValueError("no requests given")
        sampling = reqs[0].sampling
        if any(r.sampling != sampling for r in reqs):
            raise ValueError("requests batched together must share the same SamplingParams")
        for r in reqs:
            if r.max_frames is not None and r.max_frames < 1:
                raise ValueError(f"max_frames must be >= 1, got {r.max_frames}")
        inputs = self.talker_inputs(reqs)
        budget = self._frame_budget(reqs, inputs.mask.shape[1])
        limits = torch.tensor([r.max_frames or budget for r in reqs], device=self.device)
        for index, frame in enumerate(
            generate_frames(
                self.model,
                inputs,
                sampling,
                budget,
                generator,
                eager=self.options.eager,
                cpu_threads=self.options.cpu_threads,
            )
        ):
            over = limits <= index
            if bool(over.any()):
                frame = Frame(frame.codes.masked_fill(over[:, None], -1), frame.active & ~over, frame.hidden)
                if not bool(frame.active.any()):
                    return
            yield frame

    def generate_codes(
        self, req: SynthesisRequest | list[SynthesisRequest], generator: torch.Generator | None = None
    ) -> Iterator[torch.Tensor]:
        """Per step: (16,) int64 codes for one request; (B, 16) for a list, -1 in rows that already ended."""
        if isinstance(req, SynthesisRequest):
            for frame in self.frames([req], generator):
                yield frame.codes[0]
            return
        for frame in self.frames(list(req), generator):
            yield frame.codes

    def stream(
        self, req: SynthesisRequest, generator: torch.Generator | None = None, chunk_frames: int = 1
    ) -> Iterator[np.ndarray]:
        """float32 24 kHz audio chunks (chunk_frames * 1920 samples, the last may be shorter) while generating.

        The codec streams exactly (equal to a whole decode); with ICL the reference frames are pushed first and
        their audio dropped, as the official package decodes reference + new codes and cuts the reference part.
        """
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
        decoder = self.codec.stream_decoder()
        if req.ref_codes is not None:
            decoder.push(req.ref_codes.to(self.codec.device))
        pending: list[torch.Tensor] = []
        for codes in self.generate_codes(req, generator):
            pending.append(codes)
            if len(pending) == chunk_frames:
                yield self._decode_chunk(decoder, pending)
                pending = []
        if pending:
            yield self._decode_chunk(decoder, pending)

    def _decode_chunk(self, decoder, frames: list[torch.Tensor]) -> np.ndarray:
        audio = decoder.push(torch.stack(frames).to(self.codec.device))
        return audio.detach().float().cpu().numpy()

    def synthesize(self, req: SynthesisRequest, generator: torch.Generator | None = None) -> np.ndarray:
        """The whole utterance, float32 24 kHz (equals the concatenated ``stream``)."""
        chunks = list(self.stream(req, generator, chunk_frames=16))
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
