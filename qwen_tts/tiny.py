"""Write a random checkpoint in the Hugging Face file layout of the Qwen3-TTS 12 Hz repos.

``python -m qwen_tts.tiny DIR --type custom_voice|voice_design|base [--size tiny|0.6b|1.7b] [--seed N]
[--eos normal|never] [--layers N]`` writes config.json, generation_config.json, model.safetensors, vocab.json, merges.txt,
tokenizer_config.json, preprocessor_config.json and speech_tokenizer/. Both our package and the official one load it.

The tiny size keeps everything the official code hard-codes (codec vocab 3072, 16 code groups, the real codec special,
language and speaker ids) and shrinks the rest, with text hidden != talker hidden and predictor hidden != talker hidden
so that ``text_projection`` and ``small_to_mtp_projection`` are exercised. Its text tokenizer is a small byte-level BPE
(see ``qwen_tts.tokenizer.write_tiny_tokenizer``) whose special ids are remapped to 0..5 and written into config.json.
``0.6b``/``1.7b`` use the released dimensions (bf16 weights) for speed benchmarks.

Weights are deterministic for a seed (byte-identical files): fan-in scaled linears, N(0, 1) embeddings, norms
1 +- 0.1, small biases. ``--eos never`` zeroes the EOS row of ``codec_head`` so the EOS logit is exactly 0 and never
wins, which forces the generated length.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from qwen_tts.config import Qwen3TTSConfig
from qwen_tts.loading import WEIGHTS, build_empty
from qwen_tts.tokenizer import write_tiny_tokenizer

log = logging.getLogger(__name__)

SIZES = ("tiny", "0.6b", "1.7b")
CODEC_IDS = {
    "codec_pad_id": 2148, "codec_bos_id": 2149, "codec_eos_token_id": 2150, "codec_think_id": 2154,
    "codec_nothink_id": 2155, "codec_think_bos_id": 2156, "codec_think_eos_id": 2157,
}  # fmt: skip
LANGUAGE_IDS = {
    "english": 2050, "german": 2053, "spanish": 2054, "chinese": 2055, "japanese": 2058, "french": 2061,
    "sichuan_dialect": 2062, "korean": 2064, "russian": 2069, "italian": 2070, "portuguese": 2071,
    "beijing_dialect": 2074,
}  # fmt: skip
SPEAKERS = {
    "aiden": 2861, "sohee": 2864, "ono_anna": 2873, "eric": 2875, "dylan": 2878, "uncle_fu": 3010, "ryan": 3061,
    "vivian": 3065, "serena": 3066,
}  # fmt: skip
DIALECTS = {"eric": "sichuan_dialect", "dylan": "beijing_dialect"}
GENERATION_CONFIG = {
    "do_sample": True, "temperature": 0.9, "top_k": 50, "top_p": 1.0, "repetition_penalty": 1.05,
    "subtalker_dosample": True, "subtalker_temperature": 0.9, "subtalker_top_k": 50, "subtalker_top_p": 1.0,
    "max_new_tokens": 8192,
}  # fmt: skip
PREPROCESSOR = {"processor_class": "Qwen3TTSProcessor"}
_ROPE = {"rope_type": "default", "interleaved": True}
# (talker, code predictor, speaker encoder) dimensions per size.
_DIMS = {
    "tiny": (
        dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
             head_dim=16, text_hidden_size=48, text_vocab_size=1024, max_position_embeddings=4096,
             rope_scaling={**_ROPE, "mrope_section": [3, 3, 2]}),
        dict(hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
             head_dim=12, max_position_embeddings=64),
        dict(enc_dim=32, enc_channels=[16, 16, 16, 16, 48], enc_res2net_scale=4, enc_attention_channels=8,
             enc_se_channels=8),
    ),
    "0.6b": (
        dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
             num_key_value_heads=8, head_dim=128, text_hidden_size=2048, text_vocab_size=151936,
             max_position_embeddings=32768, rope_scaling={**_ROPE, "mrope_section": [24, 20, 20]}),
        dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=5, num_attention_heads=16,
             num_key_value_heads=8, head_dim=128, max_position_embeddings=65536),
        dict(enc_dim=1024),
    ),
    "1.7b": (
        dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
             num_key_value_heads=8, head_dim=128, text_hidden_size=2048, text_vocab_size=151936,
             max_position_embeddings=32768, rope_scaling={**_ROPE, "mrope_section": [24, 20, 20]}),
        dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=5, num_attention_heads=16,
             num_key_value_heads=8, head_dim=128, max_position_embeddings=65536),
        dict(enc_dim=2048),
    ),
}  # fmt: skip


def tiny_config(
    model_type: str, size: str = "tiny", special_ids: dict[str, int] | None = None, layers: int | None = None
) -> Qwen3TTSConfig:
    """The Qwen3TTSConfig written for (model_type, size); ``special_ids`` are the tokenizer's remapped text ids.

    ``layers`` overrides the talker's layer count (the widths stay), e.g. 0.6B widths with 4 layers for a CPU bench.
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    if layers is not None and layers < 1:
        raise ValueError(f"layers must be >= 1, got {layers}")
    talker, predictor, speaker = _DIMS[size]
    if layers is not None:
        talker = {**talker, "num_hidden_layers": layers}
    custom = model_type == "custom_voice"
    talker_dict = {
        **talker, **CODEC_IDS, "vocab_size": 3072, "num_code_groups": 16, "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-6, "hidden_act": "silu", "attention_bias": False, "position_id_per_seconds": 13,
        "codec_language_id": dict(LANGUAGE_IDS),
        "spk_id": dict(SPEAKERS) if custom else {},
        "spk_is_dialect": {name: DIALECTS.get(name, False) for name in SPEAKERS} if custom else {},
        "code_predictor_config": {**predictor, "vocab_size": 2048, "num_code_groups": 16, "rope_theta": 1000000.0,
                                  "rms_norm_eps": 1e-6, "hidden_act": "silu", "attention_bias": False},
    }  # fmt: skip
    top = {
        "model_type": "qwen3_tts", "architectures": ["Qwen3TTSForConditionalGeneration"],
        "tokenizer_type": "qwen3_tts_tokenizer_12hz", "tts_model_type": model_type,
        "tts_model_size": "0b6" if size == "0.6b" else "1b7",
        "talker_config": talker_dict, "speaker_encoder_config": {**speaker, "sample_rate": 24000, "mel_dim": 128},
        **(special_ids or {}),
    }  # fmt: skip
    return Qwen3TTSConfig.from_dict(top)


def _init_value(name: str, shape: torch.Size, gen: torch.Generator) -> torch.Tensor:
    """Deterministic, well-scaled fp32 values for one talker tensor, chosen by its name."""
    leaf = name.rsplit(".", 1)[-1]
    if "embedding" in name:
        return torch.randn(shape, generator=gen)
    if "norm" in name:
        return torch.rand(shape, generator=gen) * 0.2 + 0.9
    if leaf == "bias":
        return torch.randn(shape, generator=gen) * 0.02
    return torch.randn(shape, generator=gen) * shape[-1] ** -0.5


def random_state_dict(
    config: Qwen3TTSConfig, seed: int = 0, eos: str = "normal", dtype: torch.dtype = torch.float32
) -> dict[str, torch.Tensor]:
    """Every tensor of the model for ``config``, deterministic for ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    shapes = {k: v.shape for k, v in build_empty(config).state_dict().items()}
    state = {}
    for name in sorted(k for k in shapes if not k.startswith("speaker_encoder.")):
        state[name] = _init_value(name, shapes[name], gen).to(dtype)
    if eos == "never":
        state["talker.codec_head.weight"][config.talker_config.codec_eos_token_id] = 0.0
    elif eos != "normal":
        raise ValueError(f"eos must be 'normal' or 'never', got {eos!r}")
    if config.tts_model_type == "base":
        from qwen_tts.codec.tiny import init_tiny_weights
        from qwen_tts.speaker_encoder import SpeakerEncoder

        encoder = init_tiny_weights(SpeakerEncoder(config.speaker_encoder_config), seed=seed + 7)
        state.update({f"speaker_encoder.{k}": v.detach().to(dtype) for k, v in encoder.state_dict().items()})
    return state


def write_tiny_checkpoint(
    folder: str | Path,
    model_type: str,
    size: str = "tiny",
    seed: int = 0,
    eos: str = "normal",
    layers: int | None = None,
) -> Path:
    """Write the whole checkpoint folder (model, tokenizer, generation defaults, speech_tokenizer/). Returns it."""
    from safetensors.torch import save_file

    from qwen_tts.codec.tiny import write_tiny_codec

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    special_ids = write_tiny_tokenizer(out)
    config = tiny_config(model_type, size, special_ids, layers)
    dtype = torch.float32 if size == "tiny" else torch.bfloat16
    state = random_state_dict(config, seed, eos, dtype)
    save_file({k: v.contiguous() for k, v in sorted(state.items())}, out / WEIGHTS, metadata={"format": "pt"})
    config.to_json(out / "config.json")
    _write_json(out / "generation_config.json", GENERATION_CONFIG)
    _write_json(out / "preprocessor_config.json", PREPROCESSOR)
    write_tiny_codec(out / "speech_tokenizer", size="tiny" if size == "tiny" else "full", seed=seed)
    log.info("wrote %s %s checkpoint (%d tensors, eos %s) to %s", size, model_type, len(state), eos, out)
    return out


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qwen_tts.tiny", description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", type=Path, help="output folder (created)")
    parser.add_argument("--type", required=True, choices=["custom_voice", "voice_design", "base"])
    parser.add_argument("--size", default="tiny", choices=SIZES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eos", default="normal", choices=["normal", "never"])
    parser.add_argument("--layers", type=int, default=None, help="talker layers (default: the size's own)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    write_tiny_checkpoint(args.dir, args.type, args.size, args.seed, args.eos, args.layers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
