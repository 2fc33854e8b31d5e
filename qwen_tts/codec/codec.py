"""``Codec``: the 12 Hz speech tokenizer as one object (config, encoder, exact decoder, streaming decoder).

    codec = Codec.from_pretrained("ckpt-dir")            # the checkpoint folder or its speech_tokenizer/ folder
    codes = codec.encode(audio, sr)                       # (T, 16) int64, T = ceil(n_24k / 1920)
    wav = codec.decode(codes)                             # (T * 1920,) float32 at 24 kHz
    wavs = codec.decode(batch)                            # (B, T, 16) with -1 padding -> (B, T * 1920), zeros after each end
    stream = codec.stream_decoder(); stream.push(codes[:5])   # (5 * 1920,) samples, equal to decode's

Codec math stays in float32 whatever the TTS model's dtype.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from qwen_tts.checkpoint import (
    REDOWNLOAD,
    CheckpointError,
    check_safetensors,
    check_state_dict,
    load_safetensors,
    looks_local,
    one_line,
    read_json,
)
from qwen_tts.codec.config import CodecConfig
from qwen_tts.codec.decoder import CodecDecoder
from qwen_tts.codec.streaming import StreamingDecoder, check_codes

log = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
DECODE_CHUNK_FRAMES = 150  # whole decodes run in exact chunks of this many frames to bound activation memory


def resolve_codec_dir(path: str | Path) -> Path:
    """The folder holding the codec's config.json: ``path`` itself or ``path/speech_tokenizer``; a hub id is fetched."""
    local = Path(path)
    if not local.exists() and not looks_local(str(path)):
        from huggingface_hub import snapshot_download

        try:
            local = Path(snapshot_download(str(path), allow_patterns=["speech_tokenizer/*"]))
        except Exception as exc:  # offline, unknown repo, gated...: the fix is the same
            raise CheckpointError(
                f"could not fetch the codec of {str(path)!r} from the Hugging Face hub ({one_line(exc)}); run "
                f"`hf download {path} --local-dir DIR` on a machine with internet and pass DIR instead"
            ) from exc
    if (local / "speech_tokenizer").is_dir():
        return local / "speech_tokenizer"  # a file missing inside it is reported by whoever reads that file
    if (local / "config.json").is_file() and "talker_config" not in read_json(local / "config.json"):
        return local  # the codec folder itself (a TTS checkpoint's own config.json has a talker_config)
    raise CheckpointError(
        f"no codec found at {path}: expected speech_tokenizer/config.json and speech_tokenizer/{WEIGHTS_NAME} "
        f"(or both directly in the folder); {REDOWNLOAD}"
    )


def verify_codec(path: str | Path) -> Path:
    """Check the codec's config.json and weights without loading a tensor; returns its folder (CheckpointError)."""
    folder = resolve_codec_dir(path)
    CodecConfig.from_json(folder / "config.json")
    check_safetensors(folder / WEIGHTS_NAME)
    return folder


class Codec:
    """Encoder + exact decoder of Qwen3-TTS-Tokenizer-12Hz. Build with ``from_pretrained``."""

    def __init__(self, config: CodecConfig, decoder: CodecDecoder, encoder: torch.nn.Module | None = None):
        self.config = config
        self.decoder = decoder.eval()
        self.encoder = encoder

    # -- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu", load_encoder: bool = True) -> Codec:
        """Load config and weights (strict: every key present, no extra ``decoder.*`` key, shapes checked)."""
        folder = resolve_codec_dir(path)
        config = CodecConfig.from_json(folder / "config.json")
        weights = folder / WEIGHTS_NAME
        tensors = load_safetensors(weights)
        decoder = _load_decoder(config, _strip(tensors, "decoder."), f"{weights} (decoder)")
        encoder = None
        if load_encoder:
            from qwen_tts.codec.encoder import build_encoder

            encoder = build_encoder(config.encoder_config, _strip(tensors, "encoder."), f"{weights} (encoder)")
        log.info("loaded codec from %s (encoder: %s)", folder, "yes" if encoder is not None else "no")
        return cls(config, decoder, encoder).to(device)

    def to(self, device: str | torch.device) -> Codec:
        self.decoder.to(device=device, dtype=torch.float32)
        if self.encoder is not None:
            self.encoder.to(device=device, dtype=torch.float32)
        return self

    # -- facts ---------------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.decoder.parameters()).device

    @property
    def sample_rate(self) -> int:
        return self.config.output_sample_rate

    @property
    def samples_per_frame(self) -> int:
        return self.config.decode_upsample_rate

    @property
    def frame_rate(self) -> float:
        return self.config.frame_rate

    @property
    def num_quantizers(self) -> int:
        return self.config.decoder_config.num_quantizers

    @property
    def codebook_size(self) -> int:
        return self.config.decoder_config.codebook_size

    # -- encode --------------------------------------------------------------------------------------------------
    def encode(self, audio: np.ndarray | torch.Tensor, sr: int) -> torch.Tensor:
        """Mono or multi-channel audio (N,) / (N, channels) at ``sr`` Hz -> codes (ceil(N_24k / 1920), 16) int64 (CPU)."""
        return self.encode_batch([audio], sr)[0]

    def encode_batch(self, audios: list[np.ndarray | torch.Tensor], sr: int) -> list[torch.Tensor]:
        """Several clips at the same ``sr`` -> one (T_i, 16) code tensor per clip, encoded as one padded batch."""
        from qwen_tts.audio import model_input
        from qwen_tts.codec.encoder import encode_batch

        if self.encoder is None:
            raise ValueError("this Codec was loaded with load_encoder=False; reload it with the encoder to encode")
        if not audios:
            return []
        waves = [torch.from_numpy(model_input(a, sr, self.config.input_sample_rate)) for a in audios]
        codes = encode_batch(
            self.encoder, waves, self.config.encoder_valid_num_quantizers, self.config.encode_downsample_rate
        )
        return [c.cpu() for c in codes]

    # -- decode --------------------------------------------------------------------------------------------------
    def validate_codes(self, codes: torch.Tensor, allow_padding: bool = True) -> None:
        """Raise ValueError unless codes are (T, 16) / (B, T, 16) integers in [0, codebook_size) (-1 = padding)."""
        check_codes(torch.as_tensor(codes), self.num_quantizers, self.codebook_size, allow_padding)

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor | np.ndarray, chunk_frames: int = DECODE_CHUNK_FRAMES) -> torch.Tensor:
        """codes (T, 16) -> (T * 1920,) or (B, T, 16) with trailing -1 frames -> (B, T * 1920) float32.

        Samples after an item's last real frame are 0. The result equals streaming the same frames (exact decode,
        no approximate context window); it is on the codec's device.
        """
        codes = torch.as_tensor(codes)
        self.validate_codes(codes)
        single = codes.ndim == 2
        batch = (codes.unsqueeze(0) if single else codes).to(self.device, torch.long)
        lengths = (batch[..., 0] > -1).sum(dim=1) * self.samples_per_frame
        stream = StreamingDecoder(self.decoder)
        pieces = [
            stream.push(batch[:, i : i + chunk_frames].clamp(min=0)) for i in range(0, batch.shape[1], chunk_frames)
        ]
        wav = torch.cat(pieces, dim=-1) if pieces else torch.zeros(batch.shape[0], 0, device=self.device)
        positions = torch.arange(wav.shape[-1], device=wav.device)
        wav = wav.masked_fill(positions[None, :] >= lengths[:, None], 0.0)
        return wav[0] if single else wav

    def stream_decoder(self) -> StreamingDecoder:
        """A fresh exact streaming decoder: ``push(codes (n, 16))`` -> (n * 1920,) float32."""
        return StreamingDecoder(self.decoder)


def _strip(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def _load_decoder(config: CodecConfig, state: dict[str, torch.Tensor], where: str) -> CodecDecoder:
    with torch.device("meta"):
        decoder = CodecDecoder(config.decoder_config)
    check_state_dict({k: v.shape for k, v in decoder.state_dict().items()}, state, where)
    decoder.load_state_dict(state, strict=True, assign=True)
    return decoder.float()
