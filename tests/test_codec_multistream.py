"""Many exact streaming decodes at once: batched where chunks line up, each equal to its own whole decode."""

from __future__ import annotations

import pytest
import torch

from qwen_tts.codec.codec import Codec
from qwen_tts.codec.multistream import MultiStreamDecoder
from qwen_tts.codec.tiny import write_tiny_codec

STREAM_ATOL = 1e-5
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def codec(tmp_path_factory: pytest.TempPathFactory) -> Codec:
    folder = write_tiny_codec(tmp_path_factory.mktemp("ckpt") / "speech_tokenizer")
    return Codec.from_pretrained(folder.parent, load_encoder=False)


def _codes(frames: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 2048, (frames, 16), generator=torch.Generator().manual_seed(seed))


def _schedule(first: int, most: int):
    size = first
    while True:
        yield size
        size = min(size * 2, most)


def test_streams_at_different_positions_share_batches_and_stay_exact(codec: Codec, monkeypatch) -> None:
    """Three streams with the bot's 2, 4, 8, 16 chunk schedule: two start together (their fresh chunks share a batch),
    one earlier (it lines up with the others at 16-frame chunks, at a different position). Each stream's audio equals
    its own whole decode."""
    lengths, starts = [62, 46, 12], [0, 1, 1]  # stream i starts pushing at round starts[i]
    codes = [_codes(n, 7 + i) for i, n in enumerate(lengths)]
    decoder = MultiStreamDecoder(codec.decoder)
    batches = []
    real = codec.decoder.forward

    def spy(batch, state=None):
        batches.append(batch.shape[0])
        return real(batch, state)

    monkeypatch.setattr(codec.decoder, "forward", spy)
    ids = [decoder.open() for _ in codes]
    done = [0] * len(codes)
    sizes = [_schedule(2, 16) for _ in codes]
    heard: list[list[torch.Tensor]] = [[] for _ in codes]
    round_ = 0
    while any(d < n for d, n in zip(done, lengths, strict=True)):
        chunks = {}
        for i, stream in enumerate(ids):
            if round_ >= starts[i] and done[i] < lengths[i]:
                size = next(sizes[i])
                chunks[stream] = codes[i][done[i] : done[i] + size]
                done[i] += chunks[stream].shape[0]
        audio = decoder.push(chunks)
        for i, stream in enumerate(ids):
            if stream in audio:
                heard[i].append(audio[stream])
        round_ += 1
    # round 1: stream 0's 4 frames alone, then the two fresh streams' first chunks as one batch; the last round:
    # streams 0 and 1 at 16 frames each, at different positions, as one batch
    assert batches[1:3] == [1, 2] and batches[-1] == 2, batches
    assert len(batches) < sum(len(h) for h in heard)
    monkeypatch.setattr(codec.decoder, "forward", real)
    for i, c in enumerate(codes):
        whole = codec.decode(c)
        torch.testing.assert_close(torch.cat(heard[i]), whole, atol=STREAM_ATOL, rtol=0)
    for stream in ids:
        decoder.close(stream)
    assert decoder.open_streams == 0


def test_bad_pushes_are_refused(codec: Codec) -> None:
    decoder = MultiStreamDecoder(codec.decoder)
    stream = decoder.open()
    with pytest.raises(ValueError, match="not open"):
        decoder.push({stream + 1: _codes(2, 0)})
    with pytest.raises(ValueError, match="out of range"):
        decoder.push({stream: torch.full((2, 16), 5000)})
    assert decoder.push({stream: _codes(0, 0)})[stream].shape == (0,)
