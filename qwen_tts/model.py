"""``Qwen3TTSModel``: the whole ``model.safetensors`` of a Qwen3-TTS 12 Hz checkpoint.

``.talker`` (talker + code predictor) always; ``.speaker_encoder`` (ECAPA-TDNN) only for Base checkpoints, as in the
official package, so CustomVoice/VoiceDesign files have no ``speaker_encoder.*`` keys.
"""

from __future__ import annotations

from torch import nn

from qwen_tts.config import Qwen3TTSConfig
from qwen_tts.talker import Talker


class Qwen3TTSModel(nn.Module):
    """Module tree whose ``state_dict()`` keys and shapes equal the official checkpoint's."""

    def __init__(self, config: Qwen3TTSConfig):
        super().__init__()
        self.config = config
        self.talker = Talker(config.talker_config)
        self.speaker_encoder: nn.Module | None = None
        if config.tts_model_type == "base":
            from qwen_tts.speaker_encoder import SpeakerEncoder

            self.speaker_encoder = SpeakerEncoder(config.speaker_encoder_config)

    @property
    def model_type(self) -> str:
        return self.config.tts_model_type
