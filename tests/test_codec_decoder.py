"""Codec decoder: shapes, -1 padded batches, exact streaming, causality, window, bad codes, checkpoint layout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwen_tts.checkpoint import CheckpointError
from qwen_tts.codec.codec import Codec
from qwen_tts.codec.tiny import write_tiny_codec

SPF = 1920
STREAM_ATOL = 1e-5


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def codec(tmp_path_factory: pytest.TempPathFactory) -> Codec:
    folder = write_tiny_codec(tmp_path_factory.mktemp("ckpt") / "speech_tokenizer")
    return Codec.from_pretrained(folder.parent, load_encoder=False)


def random_codes(frames: int, seed: int, batch: int | None = None) -> torch.Tensor:
    shape = (frames, 16) if batch is None else (batch, frames, 16)
    return torch.randint(0, 2048, shape, generator=torch.Generator().manual_seed(seed))


def stream_in_chunks(codec: Codec, codes: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    stream, pieces, start = codec.stream_decoder(), [], 0
    for size in sizes:
        pieces.append(stream.push(codes[start : start + size]))
        assert pieces[-1].shape == (min(size, codes.shape[0] - start) * SPF,)
        start += size
    return torch.cat(pieces)


@pytest.mark.parametrize("frames", [1, 13, 40])
def test_decode_gives_1920_samples_per_frame_in_range(codec: Codec, frames: int) -> None:
    wav = codec.decode(random_codes(frames, frames))
    assert wav.shape == (frames * SPF,) and wav.dtype == torch.float32
    assert float(wav.abs().max()) <= 1.0
    assert 0.1 < float(wav.std()) < 0.5, "the tiny codec should be audible and not clipped"


def test_empty_codes_decode_to_empty_audio(codec: Codec) -> None:
    assert codec.decode(torch.zeros(0, 16, dtype=torch.long)).shape == (0,)


def test_padded_batch_equals_single_decodes(codec: Codec) -> None:
    items = [random_codes(n, 100 + n) for n in (25, 40, 3)]
    batch = torch.full((3, 40, 16), -1, dtype=torch.long)
    for row, item in enumerate(items):
        batch[row, : item.shape[0]] = item
    wavs = codec.decode(batch)
    assert wavs.shape == (3, 40 * SPF)
    for row, item in enumerate(items):
        n = item.shape[0] * SPF
        torch.testing.assert_close(wavs[row, :n], codec.decode(item), atol=STREAM_ATOL, rtol=0)
        assert not wavs[row, n:].any(), "samples after an item's last frame must be zero"


@pytest.mark.parametrize("frames", [7, 80, 310])
@pytest.mark.parametrize("chunk", [1, 2, 5, 25])
def test_streaming_equals_whole_decode(codec: Codec, frames: int, chunk: int) -> None:
    codes = random_codes(frames, frames * 7 + chunk)
    streamed = stream_in_chunks(codec, codes, [chunk] * -(-frames // chunk))
    whole = codec.decode(codes)
    assert streamed.shape == whole.shape
    assert float((streamed - whole).abs().max()) <= STREAM_ATOL


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(min_value=1, max_value=30), min_size=1, max_size=12), seed=st.integers(0, 1000))
def test_streaming_any_chunking_equals_whole_decode(codec: Codec, sizes: list[int], seed: int) -> None:
    codes = random_codes(sum(sizes), seed)
    streamed = stream_in_chunks(codec, codes, sizes)
    assert float((streamed - codec.decode(codes)).abs().max()) <= STREAM_ATOL


def test_first_frame_gives_its_audio_immediately(codec: Codec) -> None:
    codes = random_codes(30, 5)
    first = codec.stream_decoder().push(codes[:1])
    assert first.shape == (SPF,)
    torch.testing.assert_close(first, codec.decode(codes)[:SPF], atol=STREAM_ATOL, rtol=0)


def test_batched_stream_equals_per_item_streams(codec: Codec) -> None:
    codes = random_codes(12, 9, batch=2)
    stream = codec.stream_decoder()
    batched = torch.cat([stream.push(codes[:, i : i + 4]) for i in range(0, 12, 4)], dim=-1)
    assert batched.shape == (2, 12 * SPF)
    for row in range(2):
        torch.testing.assert_close(batched[row], codec.decode(codes[row]), atol=STREAM_ATOL, rtol=0)
    with pytest.raises(ValueError, match="batch"):
        stream.push(codes[:1, :1])


def test_stream_reset_starts_a_new_utterance(codec: Codec) -> None:
    codes = random_codes(6, 11)
    stream = codec.stream_decoder()
    stream.push(random_codes(20, 12))
    stream.reset()
    torch.testing.assert_close(stream.push(codes), codec.decode(codes), atol=STREAM_ATOL, rtol=0)
    assert stream.frames == 6


def test_decoder_is_causal(codec: Codec) -> None:
    codes = random_codes(20, 3)
    changed = codes.clone()
    changed[12] = (changed[12] + 1) % 2048
    a, b = codec.decode(codes), codec.decode(changed)
    assert torch.equal(a[: 12 * SPF], b[: 12 * SPF])
    assert not torch.allclose(a[12 * SPF : 13 * SPF], b[12 * SPF : 13 * SPF])


def test_attention_window_is_72_frames(codec: Codec) -> None:
    """One pre-transformer layer: frame t sees frames t-71..t, so frame 0 reaches frame 71 but not frame 72."""
    transformer = codec.decoder.pre_transformer
    assert len(transformer.layers) == 1
    x = torch.randn(1, 100, codec.config.decoder_config.latent_dim, generator=torch.Generator().manual_seed(0))
    y = x.clone()
    y[:, 0] += 1.0
    with torch.inference_mode():
        diff = (transformer(x) - transformer(y)).abs().amax(dim=-1)[0]
    assert float(diff[71]) > 1e-4
    assert float(diff[72:].max()) == 0.0


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.full((4, 16), 2048), "out of range"),
        (torch.full((4, 16), -2), "out of range"),
        (torch.zeros(4, 15, dtype=torch.long), "16"),
        (torch.zeros(4, 16), "integer"),
    ],
)
def test_bad_codes_raise_value_error(codec: Codec, bad: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        codec.decode(bad)
    with pytest.raises(ValueError, match=message):
        codec.stream_decoder().push(bad)


def test_padding_must_be_whole_trailing_frames(codec: Codec) -> None:
    middle = random_codes(5, 1)
    middle[2] = -1
    with pytest.raises(ValueError, match="after all real frames"):
        codec.decode(middle)
    partial = random_codes(5, 1)
    partial[4, 3] = -1
    with pytest.raises(ValueError, match="padding frame"):
        codec.decode(partial)
    with pytest.raises(ValueError, match="out of range"):
        codec.stream_decoder().push(middle)  # a live stream never carries padding


def test_chunked_forward_equals_exact_decode_within_one_chunk(codec: Codec) -> None:
    codes = random_codes(60, 4)
    with torch.inference_mode():
        approx = codec.decoder.chunked_forward(codes.T[None], chunk_size=300)[0, 0]
    torch.testing.assert_close(approx, codec.decode(codes), atol=STREAM_ATOL, rtol=0)


def test_checkpoint_uses_official_key_names(tmp_path: Path) -> None:
    from safetensors import safe_open

    folder = write_tiny_codec(tmp_path / "speech_tokenizer")
    assert {p.name for p in folder.iterdir()} == {
        "config.json", "configuration.json", "model.safetensors", "preprocessor_config.json",
    }  # fmt: skip
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    expected = {
        "decoder.quantizer.rvq_first.vq.layers.0._codebook.embedding_sum",
        "decoder.quantizer.rvq_rest.vq.layers.14._codebook.cluster_usage",
        "decoder.quantizer.rvq_first.input_proj.weight",
        "decoder.quantizer.rvq_rest.output_proj.weight",
        "decoder.pre_conv.conv.weight",
        "decoder.pre_transformer.input_proj.bias",
        "decoder.pre_transformer.layers.0.self_attn.q_proj.weight",
        "decoder.pre_transformer.layers.0.self_attn_layer_scale.scale",
        "decoder.pre_transformer.layers.0.mlp_layer_scale.scale",
        "decoder.pre_transformer.norm.weight",
        "decoder.upsample.1.0.conv.weight",
        "decoder.upsample.0.1.dwconv.conv.weight",
        "decoder.upsample.0.1.gamma",
        "decoder.decoder.0.conv.weight",
        "decoder.decoder.1.block.0.alpha",
        "decoder.decoder.4.block.1.conv.weight",
        "decoder.decoder.2.block.4.conv1.conv.weight",
        "decoder.decoder.3.block.3.act2.beta",
        "decoder.decoder.5.alpha",
        "decoder.decoder.6.conv.bias",
        "encoder.quantizer.semantic_residual_vector_quantizer.layers.0.codebook.embed_sum",
        "encoder.encoder_transformer.layers.0.self_attn.q_proj.weight",
        "encoder.downsample.conv.weight",
    }
    assert expected <= keys
    assert not any(
        k.startswith(("encoder.decoder.", "encoder.upsample.", "encoder.decoder_transformer.")) for k in keys
    )
    assert sum(k.startswith("decoder.") for k in keys) == len(
        Codec.from_pretrained(folder, load_encoder=False).decoder.state_dict()
    )


def test_tiny_codec_is_deterministic_and_leaves_global_rng_alone(tmp_path: Path) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = (write_tiny_codec(tmp_path / "a", seed=0) / "model.safetensors").read_bytes()
    assert torch.equal(torch.rand(3), expected)
    b = (write_tiny_codec(tmp_path / "b", seed=0) / "model.safetensors").read_bytes()
    c = (write_tiny_codec(tmp_path / "c", seed=1) / "model.safetensors").read_bytes()
    assert a == b and a != c


def test_loading_rejects_missing_weights(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    folder = write_tiny_codec(tmp_path / "speech_tokenizer")
    tensors = load_file(str(folder / "model.safetensors"))
    del tensors["decoder.pre_conv.conv.bias"]
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="pre_conv.conv.bias"):
        Codec.from_pretrained(folder, load_encoder=False)


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="speech_tokenizer"):
        Codec.from_pretrained(tmp_path)
