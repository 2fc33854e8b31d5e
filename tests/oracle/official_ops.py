"""Operations on the official ``qwen_tts`` 0.1.1 package, run inside ``.venv-oracle`` by ``runner.py``.

Each op takes a JSON-able ``args`` dict plus named input tensors and returns named output tensors (torch, CPU) and
JSON metadata. The official code is only *called* here: prompt embeddings, logits and distributions are captured by
replacing ``talker.generate`` on the loaded instance, forward hooks on the talker and code predictor, and a wrapper
around ``torch.multinomial``, never by copying it.

Facts relied on (read from the official package):
- ``Qwen3TTSForConditionalGeneration.generate`` builds the whole prompt as embeddings and then calls
  ``self.talker.generate(inputs_embeds=, attention_mask=, trailing_text_hidden=, tts_pad_embed=, **talker_kwargs)``.
- ``talker.forward`` with ``inputs_embeds`` longer than 1 is the prefill; its ``logits`` are ``codec_head`` outputs.
- HF sampling draws with ``torch.multinomial(probs, 1)``: talker draws are over the talker vocab, code-predictor draws
  over the predictor vocab, so the two are told apart by the last dimension.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

Tensors = dict[str, torch.Tensor]

GEN_KEYS = (
    "do_sample",
    "top_k",
    "top_p",
    "temperature",
    "repetition_penalty",
    "subtalker_dosample",
    "subtalker_top_k",
    "subtalker_top_p",
    "subtalker_temperature",
    "max_new_tokens",
)


class _PromptCaptured(Exception):
    """Raised from the wrapped ``talker.generate`` to stop after the prompt is built."""

    def __init__(self, kwargs: dict[str, Any]) -> None:
        super().__init__("prompt captured")
        self.kwargs = kwargs


def _voice_clone_items(tts: Any, args: dict[str, Any], inputs: Tensors) -> list[Any]:
    """VoiceClonePromptItem list from explicit reference codes / x-vector (no audio analysis involved)."""
    from qwen_tts import VoiceClonePromptItem

    ref_code = inputs.get(args["ref_code"]) if args.get("ref_code") else None
    xvec_only = ref_code is None
    return [
        VoiceClonePromptItem(
            ref_code=None if xvec_only else ref_code.long(),
            ref_spk_embedding=inputs[args["spk_embedding"]].float(),
            x_vector_only_mode=xvec_only,
            icl_mode=not xvec_only,
            ref_text=args.get("ref_text"),
        )
    ]


def _call_generate(tts: Any, args: dict[str, Any], inputs: Tensors, gen: dict[str, Any]) -> tuple[list, int]:
    """Run the public ``generate_*`` method named by ``args['mode']``; returns (wavs, sample_rate)."""
    mode = args["mode"]
    common = {"language": args.get("language", "auto"), **gen}
    if "non_streaming_mode" in args:
        common["non_streaming_mode"] = bool(args["non_streaming_mode"])
    if mode == "custom_voice":
        return tts.generate_custom_voice(args["text"], speaker=args["speaker"], instruct=args.get("instruct"), **common)
    if mode == "voice_design":
        return tts.generate_voice_design(args["text"], instruct=args.get("instruct", ""), **common)
    if mode == "voice_clone" and args.get("ref_audio"):
        # The whole official cloning path: encode the reference and take its x-vector from the audio itself.
        clip = (inputs[args["ref_audio"]].float().numpy(), int(args["ref_sr"]))
        return tts.generate_voice_clone(args["text"], ref_audio=clip, ref_text=args.get("ref_text"),
                                        x_vector_only_mode=not args.get("ref_text"), **common)  # fmt: skip
    if mode == "voice_clone":
        return tts.generate_voice_clone(
            args["text"], voice_clone_prompt=_voice_clone_items(tts, args, inputs), **common
        )
    raise ValueError(f"unknown mode {mode!r}; use custom_voice, voice_design or voice_clone")


@contextlib.contextmanager
def _patched(obj: Any, name: str, replacement: Any) -> Iterator[None]:
    """Temporarily replace ``obj.name`` (instance attribute or module function)."""
    had = name in vars(obj)
    old = getattr(obj, name)
    setattr(obj, name, replacement)
    try:
        yield
    finally:
        if had:
            setattr(obj, name, old)
        else:
            delattr(obj, name)


def op_prompt(tts: Any, args: dict[str, Any], inputs: Tensors) -> tuple[Tensors, dict[str, Any]]:
    """Prompt embeddings exactly as the official generate builds them, plus the prefill logits over them.

    Returns tensors: inputs_embeds (B, L, H), attention_mask (B, L), trailing_text_hidden (B, N, H),
    tts_pad_embed (1, 1, H), prefill_logits (B, L, vocab) and prefill_hidden (B, L, H) (last layer, post-norm).
    """
    talker = tts.model.talker

    def capture(**kwargs: Any) -> None:
        raise _PromptCaptured(kwargs)

    with _patched(talker, "generate", capture):
        try:
            _call_generate(tts, args, inputs, {"do_sample": False, "subtalker_dosample": False, "max_new_tokens": 4})
        except _PromptCaptured as stop:
            kw = stop.kwargs
        else:
            raise AssertionError("official generate never reached talker.generate")
    with torch.inference_mode():
        out = talker(
            inputs_embeds=kw["inputs_embeds"],
            attention_mask=kw["attention_mask"],
            trailing_text_hidden=kw["trailing_text_hidden"],
            tts_pad_embed=kw["tts_pad_embed"],
            use_cache=False,
            output_hidden_states=True,
        )
    tensors = {
        "inputs_embeds": kw["inputs_embeds"],
        "attention_mask": kw["attention_mask"],
        "trailing_text_hidden": kw["trailing_text_hidden"],
        "tts_pad_embed": kw["tts_pad_embed"],
        "prefill_logits": out.logits,
        "prefill_hidden": out.hidden_states[0][-1],
    }
    return tensors, {"prompt_len": int(kw["inputs_embeds"].shape[1])}


def _gen_kwargs(args: dict[str, Any]) -> dict[str, Any]:
    """The generate_* sampling kwargs present in ``args`` (other keys describe the request)."""
    return {k: args[k] for k in GEN_KEYS if k in args}


class _DrawRecorder:
    """Records, in draw order, the raw last-position logits of every talker / code-predictor forward (forward hooks)
    and the processed distribution + token of every ``torch.multinomial`` draw (told apart by vocab size)."""

    KEYS = ("logits", "probs", "tokens")

    def __init__(self, model: Any) -> None:
        self.model = model
        self.talker_vocab = model.config.talker_config.vocab_size
        if self.talker_vocab == model.config.talker_config.code_predictor_config.vocab_size:
            raise ValueError("cannot tell talker and predictor draws apart: equal vocab sizes")
        self.rec: dict[str, list[torch.Tensor]] = {f"{p}_{k}": [] for p in ("talker", "predictor") for k in self.KEYS}
        self._multinomial = torch.multinomial

    def install(self, stack: contextlib.ExitStack) -> None:
        # Forward hooks, not forward replacements: HF generate inspects forward's signature to validate kwargs.
        for module, prefix in ((self.model.talker, "talker"), (self.model.talker.code_predictor, "predictor")):
            stack.callback(module.register_forward_hook(self._hook(prefix)).remove)
        stack.enter_context(_patched(torch, "multinomial", self._draw))

    def _hook(self, prefix: str) -> Any:
        def hook(_module: Any, _args: Any, out: Any) -> None:
            self.rec[f"{prefix}_logits"].append(out.logits[:, -1].detach().float().clone())

        return hook

    def _draw(self, probs: torch.Tensor, num_samples: int, *a: Any, **kw: Any) -> torch.Tensor:
        tokens = self._multinomial(probs, num_samples, *a, **kw)
        prefix = "talker" if probs.shape[-1] == self.talker_vocab else "predictor"
        self.rec[f"{prefix}_probs"].append(probs.detach().clone())
        self.rec[f"{prefix}_tokens"].append(tokens.detach().clone().view(-1))
        return tokens

    def tensors(self) -> Tensors:
        return {key: torch.cat(items, dim=0) for key, items in self.rec.items() if items}


def op_generate(tts: Any, args: dict[str, Any], inputs: Tensors) -> tuple[Tensors, dict[str, Any]]:
    """Codes (and waveform) from the public generate_* call; optionally every sampling step's distributions.

    List-valued text/speaker/language/instruct run as one official batch: codes_i / wav_i per row (plus codes/wav
    of row 0). ``seed`` seeds the global RNG right before the call (the official sampler uses it).

    With ``record: true`` also returns, in draw order: talker_logits (S, V) raw codec_head logits of the last position,
    talker_probs (S, V) the processed distribution fed to multinomial, talker_tokens (S,), and predictor_logits /
    predictor_probs (S', V2) / predictor_tokens for the code predictor (only when it samples).
    """
    model = tts.model
    recorder = _DrawRecorder(model) if args.get("record") else None
    captured: dict[str, Any] = {}
    orig_generate = model.generate

    def generate_and_keep(*a: Any, **kw: Any) -> Any:
        captured["result"] = orig_generate(*a, **kw)
        return captured["result"]

    torch.manual_seed(int(args.get("seed", 0)))
    with contextlib.ExitStack() as stack:
        stack.enter_context(_patched(model, "generate", generate_and_keep))
        if recorder is not None:
            recorder.install(stack)
        wavs, sr = _call_generate(tts, args, inputs, _gen_kwargs(args))
    codes_list, hidden_list = captured["result"]
    tensors: Tensors = {"codes": codes_list[0], "wav": torch.from_numpy(np.asarray(wavs[0], dtype=np.float32)),
                        "talker_hidden": hidden_list[0]}  # fmt: skip
    if len(codes_list) > 1:  # a batched request (lists of texts): every row, codes cut at its own EOS
        for i, (codes, wav) in enumerate(zip(codes_list, wavs, strict=True)):
            tensors[f"codes_{i}"] = codes
            tensors[f"wav_{i}"] = torch.from_numpy(np.asarray(wav, dtype=np.float32))
    if recorder is not None:
        tensors.update(recorder.tensors())
    return tensors, {"sample_rate": int(sr), "frames": int(codes_list[0].shape[0])}


def op_decode(codec: Any, args: dict[str, Any], inputs: Tensors) -> tuple[Tensors, dict[str, Any]]:
    """Official speech tokenizer decode of codes (T, 16) -> wav (T*1920,) float32 at 24 kHz.

    ``args['codes']`` names one input, or a list of inputs decoded as one padded batch -> wav_0, wav_1, ...
    """
    names = args["codes"]
    if isinstance(names, str):
        wavs, sr = codec.decode([{"audio_codes": inputs[names].long()}])
        return {"wav": torch.from_numpy(np.asarray(wavs[0], dtype=np.float32))}, {"sample_rate": int(sr)}
    wavs, sr = codec.decode([{"audio_codes": inputs[name].long()} for name in names])
    return {f"wav_{i}": torch.from_numpy(np.asarray(w, dtype=np.float32)) for i, w in enumerate(wavs)}, {
        "sample_rate": int(sr)
    }


def op_encode(codec: Any, args: dict[str, Any], inputs: Tensors) -> tuple[Tensors, dict[str, Any]]:
    """Official speech tokenizer encode of mono float audio at ``args['sr']`` Hz -> codes (T, 16) int64.

    ``args['audio']`` names one input, or a list encoded as one padded batch -> codes_0, codes_1, ...
    """
    names = args["audio"]
    if isinstance(names, str):
        enc = codec.encode(inputs[names].float().numpy(), sr=int(args["sr"]))
        return {"codes": enc.audio_codes[0].long()}, {}
    enc = codec.encode([inputs[n].float().numpy() for n in names], sr=int(args["sr"]))
    return {f"codes_{i}": c.long() for i, c in enumerate(enc.audio_codes)}, {}


def op_reference(codec: Any, args: dict[str, Any], inputs: Tensors) -> tuple[Tensors, dict[str, Any]]:
    """The official reading of an uploaded sound file (its bytes as a uint8 input ``args['file']``), given as a
    base64 data URI like a URL/base64 caller would: sf.read, channel mean, librosa resample to 24 kHz -> wav, and
    the speech tokenizer's encode of the same file -> codes (T, 16)."""
    import base64

    data = inputs[args["file"]].numpy().tobytes()
    uri = "data:audio/wav;base64," + base64.b64encode(data).decode("ascii")
    sr = int(codec.feature_extractor.sampling_rate)
    wav = codec.load_audio(uri, target_sr=sr)
    codes = codec.encode(uri).audio_codes[0].long()
    return {"wav": torch.from_numpy(np.asarray(wav, dtype=np.float32)), "codes": codes}, {"sample_rate": sr}


def op_xvector(tts: Any, args: dict[str, Any], inputs: Tensors) -> tuple[Tensors, dict[str, Any]]:
    """Speaker x-vector (enc_dim,) of mono audio; other rates go through the official librosa resample first."""
    audio = inputs[args["audio"]].float().numpy()
    sr = int(args["sr"])
    if args.get("via_prompt") or sr != 24000:
        items = tts.create_voice_clone_prompt(ref_audio=(audio, sr), x_vector_only_mode=True)
        return {"xvector": items[0].ref_spk_embedding.float()}, {}
    return {"xvector": tts.model.extract_speaker_embedding(audio, sr).float()}, {}


def op_save(tts: Any, args: dict[str, Any], inputs: Tensors) -> tuple[Tensors, dict[str, Any]]:
    """``save_pretrained`` of the official model into ``args['out_dir']``, completed into a loadable checkpoint.

    The official config cannot be saved as a diff (``to_diff_dict`` raises KeyError 'dtype' on its nested configs), so
    config.json is written in full. save_pretrained writes model.safetensors and an HF-style generation_config.json;
    the tokenizer files, the official plain-dict generation_config.json and speech_tokenizer/ are copied from
    ``args['source']`` (the loaded checkpoint) because the official model does not save them.
    """
    out_dir = Path(args["out_dir"])
    model = tts.model

    def save_config_in_full(config: Any, save_directory: str, **_: Any) -> None:
        config.to_json_file(str(Path(save_directory) / "config.json"), use_diff=False)

    # Patched on the class: an instance attribute would itself be serialised into config.json.
    with _patched(type(model.config), "save_pretrained", save_config_in_full):
        model.save_pretrained(str(out_dir), safe_serialization=True)
    written = sorted(p.name for p in out_dir.iterdir())
    source = Path(args["source"])
    for item in source.iterdir():
        if item.name in ("config.json", "model.safetensors"):
            continue
        target = out_dir / item.name
        if item.is_dir():
            shutil.copytree(item, target, dirs_exist_ok=True)
        else:
            shutil.copy2(item, target)
    return {}, {"out_dir": str(out_dir), "written_by_save_pretrained": written}


def _compare_state(module: Any, file: Path) -> dict[str, list[str]]:
    """Keys missing from / unexpected in ``file`` and keys whose loaded values differ from the file's tensors."""
    from safetensors.torch import load_file

    loaded = module.state_dict()
    stored = load_file(str(file))
    return {
        "missing": sorted(set(loaded) - set(stored)),
        "unexpected": sorted(set(stored) - set(loaded)),
        "mismatched": sorted(
            k
            for k in set(loaded) & set(stored)
            if loaded[k].shape != stored[k].shape or not torch.equal(loaded[k].float(), stored[k].float())
        ),
    }


def op_weights_check(tts: Any, args: dict[str, Any], inputs: Tensors) -> tuple[Tensors, dict[str, Any]]:
    """How the official from_pretrained loaded a checkpoint: HF silently random-inits missing keys and drops
    unexpected ones, so compare its state dicts (model and speech tokenizer) with the files, key by key."""
    source = Path(args["source"])
    meta = {"model": _compare_state(tts.model, source / "model.safetensors")}
    codec = tts.model.speech_tokenizer.model
    meta["speech_tokenizer"] = _compare_state(codec, source / "speech_tokenizer" / "model.safetensors")
    meta["tts_model_type"] = tts.model.tts_model_type
    meta["speakers"] = sorted(tts.get_supported_speakers() or [])
    meta["languages"] = sorted(tts.get_supported_languages() or [])
    return {}, meta


def op_tokenize(_unused: Any, args: dict[str, Any], inputs: Tensors) -> tuple[Tensors, dict[str, Any]]:
    """Text ids from the official processor exactly as ``Qwen3TTSModel.from_pretrained`` loads it
    (``AutoProcessor.from_pretrained(dir, fix_mistral_regex=True)``), for each string in ``args['texts']``.

    Needs only config.json + the tokenizer files in ``args['folder']`` (no weights are loaded).
    """
    from qwen_tts.core.models import Qwen3TTSConfig, Qwen3TTSProcessor
    from transformers import AutoConfig, AutoProcessor

    AutoConfig.register("qwen3_tts", Qwen3TTSConfig, exist_ok=True)
    AutoProcessor.register(Qwen3TTSConfig, Qwen3TTSProcessor, exist_ok=True)
    processor = AutoProcessor.from_pretrained(args["folder"], fix_mistral_regex=True)
    out = {f"ids_{i}": processor(text=t, return_tensors="pt")["input_ids"][0] for i, t in enumerate(args["texts"])}
    return out, {"vocab_size": len(processor.tokenizer)}
