"""Write a random but well-scaled ``speech_tokenizer/`` folder in the official file layout.

``write_tiny_codec(dir, size="tiny")`` writes config.json, configuration.json, model.safetensors and
preprocessor_config.json that both our ``Codec`` and the official package load. Encoder weights come from a
transformers ``MimiModel`` (the official encoder is a MimiModel without its decoder half); decoder weights from our
``CodecDecoder``, whose parameter names are the official keys. The init is deterministic for a seed: fan-in scaled
weights, N(0, 1) codebooks, positive ``cluster_usage``, norms near 1, and the last vocoder conv rescaled so the waveform
std is about 0.25 (a plain random init clips almost every sample at the final clamp), with vocoder activations kept O(1).
``size="full"`` uses the released checkpoint's dimensions (for GPU speed tests).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from safetensors.torch import save_file

from qwen_tts.codec.config import CodecConfig, CodecDecoderConfig
from qwen_tts.codec.decoder import CodecDecoder

log = logging.getLogger(__name__)

TARGET_WAVE_STD = 0.25

TINY_DECODER = dict(
    codebook_size=2048, codebook_dim=16, latent_dim=32, hidden_size=32, intermediate_size=64,
    num_attention_heads=4, num_key_value_heads=4, head_dim=8, num_hidden_layers=1, sliding_window=72,
    num_quantizers=16, decoder_dim=32, upsample_rates=[8, 5, 4, 3], upsampling_ratios=[2, 2],
)  # fmt: skip
TINY_ENCODER = dict(
    hidden_size=32, num_filters=4, num_hidden_layers=1, intermediate_size=64, num_attention_heads=4,
    num_key_value_heads=4, head_dim=8, codebook_size=2048, codebook_dim=16, vector_quantization_hidden_dimension=16,
    num_quantizers=16, upsample_groups=32, frame_rate=12.5, upsampling_ratios=[8, 6, 5, 4],
)  # fmt: skip
FULL_DECODER = dict(
    codebook_size=2048, codebook_dim=512, latent_dim=1024, hidden_size=512, intermediate_size=1024,
    num_attention_heads=16, num_key_value_heads=16, head_dim=64, num_hidden_layers=8, sliding_window=72,
    num_quantizers=16, decoder_dim=1536, upsample_rates=[8, 5, 4, 3], upsampling_ratios=[2, 2],
)  # fmt: skip
FULL_ENCODER = dict(
    hidden_size=512, num_filters=64, num_hidden_layers=8, intermediate_size=2048, num_attention_heads=8,
    num_key_value_heads=8, head_dim=64, codebook_size=2048, codebook_dim=256, vector_quantization_hidden_dimension=256,
    num_quantizers=32, frame_rate=12.5, upsampling_ratios=[8, 6, 5, 4], sliding_window=250,
)  # fmt: skip
PREPROCESSOR = {
    "feature_extractor_type": "EncodecFeatureExtractor",
    "sampling_rate": 24000,
    "feature_size": 1,
    "padding_value": 0.0,
    "padding_side": "right",
    "return_attention_mask": True,
}
CONFIGURATION = {"framework": "pytorch", "task": "feature-extraction", "allow_remote": True}
_ENCODER_DROPPED = ("upsample.", "decoder_transformer.", "decoder.")  # the official encoder sets these to None


def codec_config(size: str = "tiny") -> CodecConfig:
    """The CodecConfig written for ``size`` ("tiny" or "full")."""
    from transformers import MimiConfig

    if size not in ("tiny", "full"):
        raise ValueError(f"size must be 'tiny' or 'full', got {size!r}")
    dec, enc = (TINY_DECODER, TINY_ENCODER) if size == "tiny" else (FULL_DECODER, FULL_ENCODER)
    encoder = MimiConfig(**enc).to_dict()
    for key in ("transformers_version", "architectures"):
        encoder.pop(key, None)
    return CodecConfig(encoder_config=encoder, decoder_config=CodecDecoderConfig.from_dict(dec))


def _fan_in(name: str, tensor: torch.Tensor, transposed: set[str]) -> float:
    if name in transposed:  # ConvTranspose1d weight (in, out, k): each output sums in * k / stride terms (~in * 2)
        return tensor.shape[0] * 2.0
    return float(tensor[0].numel())


def _init_tensor(name: str, tensor: torch.Tensor, gen: torch.Generator, transposed: set[str]) -> None:
    """Deterministic, well-scaled values for one state-dict entry, chosen by its name."""
    leaf = name.rsplit(".", 1)[-1]

    def normal(std: float, mean: float = 0.0) -> torch.Tensor:
        return torch.randn(tensor.shape, generator=gen) * std + mean

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(tensor.shape, generator=gen) * (hi - lo) + lo

    if leaf in ("embedding_sum", "embed_sum"):
        value = normal(1.0)
    elif leaf == "cluster_usage":
        value = uniform(0.5, 2.0)
    elif leaf == "initialized":
        value = torch.ones(tensor.shape)
    elif leaf in ("alpha", "beta"):
        value = normal(0.1)
    elif leaf in ("scale", "gamma"):
        value = uniform(0.05, 0.2)  # LayerScale / ConvNeXt gamma: big enough that every branch matters in parity
    elif "norm" in name and leaf == "weight":
        value = uniform(0.9, 1.1)
    elif leaf == "bias":
        value = normal(0.02)
    elif tensor.ndim >= 2:
        value = normal(_fan_in(name, tensor, transposed) ** -0.5)
    else:
        raise AssertionError(f"no init rule for {name} {tuple(tensor.shape)}")
    tensor.copy_(value.to(tensor.dtype))


def init_tiny_weights(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Overwrite every tensor of ``module`` (e.g. a SpeakerEncoder) with the deterministic tiny init; returns it."""
    _init_module(module, torch.Generator().manual_seed(seed))
    return module


def _init_module(module: torch.nn.Module, gen: torch.Generator) -> None:
    transposed = {f"{n}.weight" for n, m in module.named_modules() if isinstance(m, torch.nn.ConvTranspose1d)}
    with torch.no_grad():
        for name, tensor in sorted(module.state_dict(keep_vars=True).items()):
            _init_tensor(name, tensor.data, gen, transposed)


def _output_std(decoder: CodecDecoder, module: torch.nn.Module, codes: torch.Tensor) -> float:
    captured: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        decoder(codes)
    finally:
        handle.remove()
    return float(captured[0].std())


def _normalise_vocoder(decoder: CodecDecoder, gen: torch.Generator) -> None:
    """Data-driven rescaling (LSUV-style) so vocoder activations stay O(1) like a trained one.

    With plain fan-in init, SnakeBeta's sin^2 offsets pile up through the residual units until activations reach
    ~100 before the last conv; sin(100 * a) then turns float rounding into 1e-4 output noise. Each upsampling conv is
    scaled to output std 1, each residual branch to std 0.3, and the last conv to the target waveform std.
    """
    cfg = decoder.config
    frames = 25 if cfg.decoder_dim <= 256 else 3
    codes = torch.randint(0, cfg.codebook_size, (1, cfg.num_quantizers, frames), generator=gen)
    targets: list[tuple[torch.nn.Module, float]] = [(decoder.decoder[0].conv, 1.0)]
    for block in decoder.decoder[1:-2]:
        targets.append((block.block[1].conv, 1.0))
        targets += [(unit.conv2.conv, 0.3) for unit in block.block[2:]]
    targets.append((decoder.decoder[-1].conv, TARGET_WAVE_STD))
    with torch.no_grad():
        for conv, target in targets:
            factor = target / _output_std(decoder, conv, codes)
            conv.weight.mul_(factor)
            conv.bias.mul_(factor)


def build_decoder(cfg: CodecDecoderConfig, seed: int = 0) -> CodecDecoder:
    """A CodecDecoder with the deterministic tiny-checkpoint init."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # module constructors draw from the global RNG: leave the caller's alone
        decoder = CodecDecoder(cfg)
    _init_module(decoder, gen)
    _normalise_vocoder(decoder, gen)
    return decoder


def build_encoder_state(encoder_config: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """State dict (without the ``encoder.`` prefix) of a MimiModel encoder half with the deterministic init."""
    from transformers import MimiConfig, MimiModel

    with torch.random.fork_rng(devices=[]):  # MimiModel's own init draws from the global RNG: leave the caller's alone
        torch.manual_seed(seed)
        model = MimiModel(MimiConfig(**encoder_config))
    gen = torch.Generator().manual_seed(seed + 1)
    _init_module(model, gen)
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith(_ENCODER_DROPPED)}


def write_tiny_codec(speech_tokenizer_dir: str | Path, size: str = "tiny", seed: int = 0) -> Path:
    """Write speech_tokenizer/{config.json, configuration.json, model.safetensors, preprocessor_config.json}.

    Deterministic for (size, seed). Returns the folder.
    """
    out = Path(speech_tokenizer_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = codec_config(size)
    tensors = {f"encoder.{k}": v for k, v in build_encoder_state(cfg.encoder_config, seed).items()}
    decoder = build_decoder(cfg.decoder_config, seed)
    tensors.update({f"decoder.{k}": v.detach().clone() for k, v in decoder.state_dict().items()})
    save_file({k: v.contiguous() for k, v in sorted(tensors.items())}, out / "model.safetensors")
    cfg.to_json(out / "config.json")
    (out / "configuration.json").write_text(json.dumps(CONFIGURATION, indent=2) + "\n", encoding="utf-8")
    (out / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR, indent=2) + "\n", encoding="utf-8")
    log.info("wrote %s codec (%d tensors) to %s", size, len(tensors), out)
    return out
