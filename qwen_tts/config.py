"""Configuration of a Qwen3-TTS 12 Hz checkpoint (``config.json``), field for field.

Four dataclasses mirror the nesting of the official file: ``Qwen3TTSConfig`` (top level) holds a ``TalkerConfig``
(which holds a ``CodePredictorConfig``) and a ``SpeakerEncoderConfig``. Every special id, speaker id and language id is
read from the file; none is hard-coded here. The codec ids have no default because the official code defaults are stale
(4196..) and would silently break a checkpoint that lacks them. Unknown keys are kept in ``extra`` (so a round trip
writes them back) and logged.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qwen_tts.checkpoint import REDOWNLOAD, CheckpointError, one_line, read_json

log = logging.getLogger(__name__)

MODEL_TYPES = ("base", "custom_voice", "voice_design")
CONTROL_IDS = 1024  # the top ids of the talker vocab are specials (never sampled as codes), not codebook-0 codes


def control_id_start(vocab_size: int) -> int:
    """First id of the talker's control-id window ``[vocab_size - CONTROL_IDS, vocab_size)``."""
    return vocab_size - CONTROL_IDS


_REQUIRED_CODEC_IDS = (
    "codec_eos_token_id", "codec_think_id", "codec_nothink_id", "codec_think_bos_id", "codec_think_eos_id",
    "codec_pad_id", "codec_bos_id",
)  # fmt: skip


def config_from_json(cls: Any, path: Path) -> Any:
    """``cls.from_dict`` of the JSON object in ``path``, every failure a one-line CheckpointError naming the file: a
    missing or malformed file, a value of the wrong type, or a value the checks below refuse."""
    data = read_json(path)
    try:
        return cls.from_dict(data)
    except CheckpointError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise CheckpointError(
            f"{path} is not a valid {cls.__name__} ({one_line(exc)}); fix the value or {REDOWNLOAD}"
        ) from exc


def split_known_keys(cls: type, data: dict[str, Any], where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``data`` into the dataclass fields of ``cls`` and the rest (kept in ``extra``, logged at debug level)."""
    names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
    known = {k: v for k, v in data.items() if k in names}
    extra = {k: v for k, v in data.items() if k not in names}
    if extra:
        log.debug("%s: keeping unknown keys %s", where, sorted(extra))
    return known, extra


def dataclass_to_dict(obj: Any) -> dict[str, Any]:
    """Fields of a config dataclass (nested configs through their ``to_dict``), then its ``extra`` keys."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        if f.name == "extra":
            continue
        value = getattr(obj, f.name)
        out[f.name] = value.to_dict() if hasattr(value, "to_dict") else value
    out.update(obj.extra)
    return out


@dataclass
class _Transformer:
    """Fields shared by the talker and the code predictor (a Qwen3-style decoder)."""

    vocab_size: int = 2048
    hidden_size: int = 1024
    intermediate_size: int = 3072
    num_hidden_layers: int = 5
    num_attention_heads: int = 16
    num_key_value_heads: int = 8
    head_dim: int | None = None
    hidden_act: str = "silu"
    max_position_embeddings: int = 32768
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    attention_bias: bool = False
    num_code_groups: int = 16
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def attn_head_dim(self) -> int:
        """head_dim, or hidden_size / num_attention_heads when the file does not give it (as the official code)."""
        return self.head_dim if self.head_dim else self.hidden_size // self.num_attention_heads

    def to_dict(self) -> dict[str, Any]:
        return dataclass_to_dict(self)

    def validate(self, where: str) -> None:
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"{where}: num_attention_heads={self.num_attention_heads} must be a multiple of "
                f"num_key_value_heads={self.num_key_value_heads}"
            )
        if self.attn_head_dim % 2:
            raise ValueError(f"{where}: head_dim={self.attn_head_dim} must be even for rotary embeddings")
        if self.hidden_act != "silu":
            raise ValueError(f"{where}: hidden_act={self.hidden_act!r} is not supported (only 'silu')")


@dataclass
class CodePredictorConfig(_Transformer):
    """``talker_config.code_predictor_config``: the 5-layer sub-talker that predicts codebooks 1..15."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CodePredictorConfig:
        known, extra = split_known_keys(cls, data, "code_predictor_config")
        cfg = cls(**known, extra=extra)
        cfg.validate("code_predictor_config")
        return cfg


@dataclass
class TalkerConfig(_Transformer):
    """``talker_config``: the 28-layer talker that predicts codebook 0 (vocab = 2048 codes + 1024 specials)."""

    vocab_size: int = 3072
    intermediate_size: int = 2048
    num_hidden_layers: int = 20
    num_key_value_heads: int = 2
    text_hidden_size: int = 2048
    text_vocab_size: int = 151936
    codec_eos_token_id: int | None = None
    codec_think_id: int | None = None
    codec_nothink_id: int | None = None
    codec_think_bos_id: int | None = None
    codec_think_eos_id: int | None = None
    codec_pad_id: int | None = None
    codec_bos_id: int | None = None
    spk_id: dict[str, int] = field(default_factory=dict)
    spk_is_dialect: dict[str, Any] = field(default_factory=dict)
    codec_language_id: dict[str, int] = field(default_factory=dict)
    code_predictor_config: CodePredictorConfig = field(default_factory=CodePredictorConfig)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TalkerConfig:
        known, extra = split_known_keys(cls, data, "talker_config")
        known["code_predictor_config"] = CodePredictorConfig.from_dict(dict(known.get("code_predictor_config") or {}))
        for key in ("spk_id", "spk_is_dialect", "codec_language_id"):
            known[key] = {str(k).lower(): _first(v) for k, v in dict(known.get(key) or {}).items()}
        cfg = cls(**known, extra=extra)
        cfg.validate("talker_config")
        return cfg

    def validate(self, where: str) -> None:
        super().validate(where)
        missing = [k for k in _REQUIRED_CODEC_IDS if getattr(self, k) is None]
        if missing:
            raise ValueError(f"{where}: config.json lacks {missing}; copy them from the released checkpoint's config")
        window = self.control_id_start
        low = [k for k in _REQUIRED_CODEC_IDS if getattr(self, k) < window]
        if low:
            raise ValueError(
                f"{where}: {low} must be >= vocab_size-{CONTROL_IDS}={window} (the suppressed special window)"
            )
        for name, dialect in self.spk_is_dialect.items():
            if dialect and dialect not in self.codec_language_id:
                raise ValueError(f"{where}: speaker {name!r} has dialect {dialect!r}, not a codec_language_id key")
        if self.code_predictor_config.num_code_groups != self.num_code_groups:
            raise ValueError(f"{where}: talker and code predictor disagree on num_code_groups")

    @property
    def control_id_start(self) -> int:
        """First special id: ``[control_id_start, vocab_size)`` is suppressed in sampling (EOS excepted)."""
        return control_id_start(self.vocab_size)

    @property
    def codebook_size(self) -> int:
        """Rows of the codebook-0 table that are real codes (the rest are specials)."""
        return self.control_id_start


def _first(value: Any) -> Any:
    """Some ports store ids as one-element lists; the official checkpoints store ints."""
    return value[0] if isinstance(value, list) and len(value) == 1 else value


@dataclass
class SpeakerEncoderConfig:
    """``speaker_encoder_config``: the ECAPA-TDNN x-vector encoder (built for Base checkpoints only)."""

    mel_dim: int = 128
    enc_dim: int = 1024
    enc_channels: list[int] = field(default_factory=lambda: [512, 512, 512, 512, 1536])
    enc_kernel_sizes: list[int] = field(default_factory=lambda: [5, 3, 3, 3, 1])
    enc_dilations: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 1])
    enc_attention_channels: int = 128
    enc_res2net_scale: int = 8
    enc_se_channels: int = 128
    sample_rate: int = 24000
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpeakerEncoderConfig:
        known, extra = split_known_keys(cls, data, "speaker_encoder_config")
        return cls(**known, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        return dataclass_to_dict(self)


@dataclass
class Qwen3TTSConfig:
    """Top level of ``config.json`` (``model_type: qwen3_tts``)."""

    talker_config: TalkerConfig = field(default_factory=TalkerConfig)
    speaker_encoder_config: SpeakerEncoderConfig = field(default_factory=SpeakerEncoderConfig)
    model_type: str = "qwen3_tts"
    tokenizer_type: str = "qwen3_tts_tokenizer_12hz"
    tts_model_size: str = "1b7"
    tts_model_type: str = "custom_voice"
    im_start_token_id: int = 151644
    im_end_token_id: int = 151645
    tts_pad_token_id: int = 151671
    tts_bos_token_id: int = 151672
    tts_eos_token_id: int = 151673
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Qwen3TTSConfig:
        known, extra = split_known_keys(cls, data, "config.json")
        if "talker_config" not in known:
            raise ValueError("config.json has no talker_config: is this a Qwen3-TTS checkpoint folder?")
        known["talker_config"] = TalkerConfig.from_dict(dict(known["talker_config"]))
        known["speaker_encoder_config"] = SpeakerEncoderConfig.from_dict(
            dict(known.get("speaker_encoder_config") or {})
        )
        cfg = cls(**known, extra=extra)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.tts_model_type not in MODEL_TYPES:
            raise ValueError(f"tts_model_type={self.tts_model_type!r} is not one of {MODEL_TYPES}")
        if not isinstance(self.tts_model_size, str):
            raise ValueError(f"tts_model_size must be a string like '0b6' or '1b7', got {self.tts_model_size!r}")
        for key in ("tts_pad_token_id", "tts_bos_token_id", "tts_eos_token_id"):
            if not 0 <= getattr(self, key) < self.talker_config.text_vocab_size:
                raise ValueError(f"{key}={getattr(self, key)} is outside text_vocab_size")
        if self.tts_model_type == "base" and self.speaker_encoder_config.enc_dim != self.talker_config.hidden_size:
            raise ValueError(
                "speaker_encoder_config.enc_dim must equal talker hidden_size (the x-vector is a codec row)"
            )

    @property
    def supports_instruct(self) -> bool:
        """The official wrapper drops instruct for 0.6B CustomVoice and never passes it for Base."""
        if self.tts_model_type == "base":
            return False
        return not (self.tts_model_type == "custom_voice" and self.tts_model_size in "0b6")

    def to_dict(self) -> dict[str, Any]:
        return dataclass_to_dict(self)

    @classmethod
    def from_json(cls, path: str | Path) -> Qwen3TTSConfig:
        """Read and validate ``path``; any problem is a CheckpointError naming the file."""
        return config_from_json(cls, Path(path))

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
