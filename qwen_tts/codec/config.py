"""Configuration of the 12 Hz speech tokenizer (``speech_tokenizer/config.json``), key for key.

The official file nests a transformers ``MimiConfig`` dict under ``encoder_config`` (we keep it as a plain dict and hand
it to ``MimiConfig`` only when the encoder is built) and the decoder's own settings under ``decoder_config``.
Unknown keys are kept (so a round trip writes them back) and logged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qwen_tts.config import config_from_json, dataclass_to_dict, split_known_keys

SAMPLE_RATE = 24_000
SAMPLES_PER_FRAME = 1920
NUM_CODE_GROUPS = 16


@dataclass
class CodecDecoderConfig:
    """``decoder_config`` of the speech tokenizer (defaults = the released 12 Hz checkpoint)."""

    codebook_size: int = 2048
    codebook_dim: int = 512
    hidden_size: int = 512
    latent_dim: int = 1024
    max_position_embeddings: int = 8000
    rope_theta: float = 10000.0
    num_attention_heads: int = 16
    num_key_value_heads: int = 16
    head_dim: int | None = None
    attention_bias: bool = False
    sliding_window: int = 72
    intermediate_size: int = 1024
    hidden_act: str = "silu"
    layer_scale_initial_scale: float = 0.01
    rms_norm_eps: float = 1e-5
    num_hidden_layers: int = 8
    num_quantizers: int = 16
    num_semantic_quantizers: int = 1
    semantic_codebook_size: int = 4096  # present in the checkpoint but unused: both RVQ stages have codebook_size rows
    upsample_rates: list[int] = field(default_factory=lambda: [8, 5, 4, 3])
    upsampling_ratios: list[int] = field(default_factory=lambda: [2, 2])
    decoder_dim: int = 1536
    attention_dropout: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.upsample_rates = list(self.upsample_rates)
        self.upsampling_ratios = list(self.upsampling_ratios)
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.codebook_dim % 2:
            raise ValueError(
                f"decoder_config.codebook_dim must be even (entries are codebook_dim/2 wide), got {self.codebook_dim}"
            )
        if self.decoder_dim % 2 ** len(self.upsample_rates):
            raise ValueError(
                f"decoder_config.decoder_dim={self.decoder_dim} must be divisible by 2**{len(self.upsample_rates)}"
            )
        if self.hidden_act != "silu":
            raise ValueError(f"decoder_config.hidden_act={self.hidden_act!r} is not supported; only 'silu' is")

    @property
    def total_upsample(self) -> int:
        """Waveform samples per code frame (1920 for the released checkpoint)."""
        prod = 1
        for r in [*self.upsample_rates, *self.upsampling_ratios]:
            prod *= r
        return prod

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CodecDecoderConfig:
        known, extra = split_known_keys(cls, data, "decoder_config")
        return cls(**known, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        return dataclass_to_dict(self)


@dataclass
class CodecConfig:
    """Top level of ``speech_tokenizer/config.json`` (``model_type: qwen3_tts_tokenizer_12hz``)."""

    encoder_config: dict[str, Any] = field(default_factory=dict)  # a MimiConfig as a dict
    decoder_config: CodecDecoderConfig = field(default_factory=CodecDecoderConfig)
    encoder_valid_num_quantizers: int = 16
    input_sample_rate: int = SAMPLE_RATE
    output_sample_rate: int = SAMPLE_RATE
    decode_upsample_rate: int = SAMPLES_PER_FRAME
    encode_downsample_rate: int = SAMPLES_PER_FRAME
    model_type: str = "qwen3_tts_tokenizer_12hz"
    architectures: list[str] = field(default_factory=lambda: ["Qwen3TTSTokenizerV2Model"])
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.decoder_config, dict):
            self.decoder_config = CodecDecoderConfig.from_dict(self.decoder_config)
        if self.decode_upsample_rate != self.decoder_config.total_upsample:
            # The official decode trims with decode_upsample_rate; a mismatch silently cuts audio, so refuse it.
            raise ValueError(
                f"decode_upsample_rate={self.decode_upsample_rate} must equal the product of upsample_rates and "
                f"upsampling_ratios ({self.decoder_config.total_upsample})"
            )
        if self.encoder_valid_num_quantizers != self.decoder_config.num_quantizers:
            raise ValueError(
                f"encoder_valid_num_quantizers={self.encoder_valid_num_quantizers} must equal "
                f"decoder_config.num_quantizers={self.decoder_config.num_quantizers}"
            )

    @property
    def frame_rate(self) -> float:
        """Code frames per second (12.5)."""
        return self.output_sample_rate / self.decode_upsample_rate

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CodecConfig:
        known, extra = split_known_keys(cls, data, "speech_tokenizer config")
        known["decoder_config"] = CodecDecoderConfig.from_dict(known.get("decoder_config") or {})
        known["encoder_config"] = dict(known.get("encoder_config") or {})
        return cls(**known, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        return dataclass_to_dict(self)

    @classmethod
    def from_json(cls, path: str | Path) -> CodecConfig:
        """Read and validate ``path``; any problem is a CheckpointError naming the file."""
        return config_from_json(cls, Path(path))

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
