"""End-to-end parity through our public API: batches, the 0.6B instruct rule, voice cloning from reference audio.

- A batch of two CustomVoice requests with different prompt lengths (one with instruct and a dialect speaker) gives
  the official batch's greedy codes row by row, through our public ``generate_codes([...])``.
- A checkpoint whose ``tts_model_size`` is "0b6" ignores ``instruct`` for CustomVoice in the official wrapper; ours
  must build the same prompt (instruct dropped), not a longer one.
- A Qwen2 tokenizer with a real-size vocabulary (> 100000 entries) splits text like the official processor, which
  loads it with ``fix_mistral_regex=True`` (that rewrites the split regex for such vocabularies: "iPhone" -> i|Phone).
- Cloning from a 16 kHz reference clip (resample, codec encode, x-vector, ICL prompt, generation, decode of reference
  + new codes with the reference share cut off) gives the official ``generate_voice_clone`` codes and waveform.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.oracle.client import Oracle, OracleResults

pytestmark = pytest.mark.parity

FRAMES = 30
ROWS = [
    {"text": "Hello world.", "speaker": "vivian", "language": "english", "instruct": ""},
    {"text": "Once upon a time the dragon said hello to the narrator in the castle.", "speaker": "eric",
     "language": "auto", "instruct": "Speak calm, like a whisper."},
]  # fmt: skip
INSTRUCT = "Speak calm, like a whisper."
REF_TEXT = "The castle was calm that night."
CLIP_SR = 16_000
BIG_VOCAB = 100_100  # above the 100000 entries at which transformers applies the regex fix
CASE_MERGES = [("i", "P"), ("o", "W")]
TOKENIZER_TEXTS = ["iPhone HelloWorld", "<|im_start|>assistant\nOnce upon a time, iPhone said hello.<|im_end|>\n"]


@pytest.fixture(scope="module")
def no_eos_custom_voice(tiny_factory) -> Path:
    return tiny_factory("custom_voice", eos="never")


@pytest.fixture(scope="module")
def small_custom_voice(tiny_custom_voice: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny CustomVoice checkpoint relabelled as a 0.6B model (``tts_model_size`` "0b6")."""
    folder = tmp_path_factory.mktemp("tiny_0b6") / "ckpt"
    shutil.copytree(tiny_custom_voice, folder)
    config = json.loads((folder / "config.json").read_text())
    config["tts_model_size"] = "0b6"
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return folder


@pytest.fixture(scope="module")
def no_eos_base(tiny_factory) -> Path:
    return tiny_factory("base", eos="never")


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    from tests.parity.model_cases import reference_clip

    return reference_clip(1.2, CLIP_SR, seed=9)


@pytest.fixture(scope="module")
def big_vocab_tokenizer(tiny_custom_voice: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny tokenizer padded to BIG_VOCAB entries, with merges that cross a case change ("i P", "o W")."""
    folder = tmp_path_factory.mktemp("big_vocab")
    for name in ("config.json", "tokenizer_config.json", "preprocessor_config.json"):
        shutil.copy(tiny_custom_voice / name, folder / name)
    vocab = json.loads((tiny_custom_voice / "vocab.json").read_text())
    header, *merges = (tiny_custom_voice / "merges.txt").read_text().splitlines()
    for a, b in CASE_MERGES:
        vocab.setdefault(a + b, len(vocab))
    filler = (f"filler{i}" for i in range(BIG_VOCAB))
    while len(vocab) < BIG_VOCAB:
        vocab.setdefault(next(filler), len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    lines = [header, *(f"{a} {b}" for a, b in CASE_MERGES), *merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="module")
def official(
    oracle: Oracle,
    no_eos_custom_voice: Path,
    small_custom_voice: Path,
    no_eos_base: Path,
    clip: torch.Tensor,
    big_vocab_tokenizer: Path,
) -> OracleResults:
    batch = {key: [row[key] for row in ROWS] for key in ROWS[0]}
    greedy = {"do_sample": False, "subtalker_dosample": False, "repetition_penalty": 1.0, "max_new_tokens": FRAMES + 1}
    single = {"mode": "custom_voice", "text": ROWS[1]["text"], "speaker": "vivian", "language": "english"}
    return oracle.run([
        {"id": "batch", "op": "generate", "checkpoint": no_eos_custom_voice,
         "args": {"mode": "custom_voice", **batch, **greedy}},
        {"id": "small_instruct", "op": "prompt", "checkpoint": small_custom_voice,
         "args": {**single, "instruct": INSTRUCT}},
        {"id": "small_plain", "op": "prompt", "checkpoint": small_custom_voice, "args": single},
        {"id": "clone", "op": "generate", "checkpoint": no_eos_base,
         "args": {"mode": "voice_clone", "text": ROWS[1]["text"], "language": "english", "ref_audio": "clip",
                  "ref_sr": CLIP_SR, "ref_text": REF_TEXT, **greedy}},
        {"id": "tokenize", "op": "tokenize", "checkpoint": big_vocab_tokenizer,
         "args": {"folder": str(big_vocab_tokenizer), "texts": TOKENIZER_TEXTS}},
    ], inputs={"clip": clip})  # fmt: skip


def test_batched_greedy_codes_match_official_batch(official: OracleResults, no_eos_custom_voice: Path) -> None:
    from qwen_tts import QwenTTS, SamplingParams, SynthesisRequest

    torch.set_num_threads(1)
    tts = QwenTTS.from_pretrained(no_eos_custom_voice)
    reqs = [SynthesisRequest(row["text"], language=row["language"], speaker=row["speaker"],
                             instruct=row["instruct"] or None, sampling=SamplingParams.greedy(1.0), max_frames=FRAMES)
            for row in ROWS]  # fmt: skip
    assert len(set(int(n) for n in tts.talker_inputs(reqs).lengths)) == 2, "rows must differ in length (padding)"
    ours = torch.stack(list(tts.generate_codes(reqs)), dim=1)  # (B, T, 16)
    for row in range(len(ROWS)):
        theirs = official["batch"][f"codes_{row}"]
        assert theirs.shape == (FRAMES, 16)
        assert torch.equal(ours[row], theirs), (
            f"row {row}: first diff at frame {(ours[row] != theirs).any(1).nonzero()[0]}"
        )


def test_small_custom_voice_drops_instruct_like_official(official: OracleResults, small_custom_voice: Path) -> None:
    from qwen_tts import QwenTTS, SynthesisRequest

    tts = QwenTTS.from_pretrained(small_custom_voice)
    theirs, their_plain = official["small_instruct"]["inputs_embeds"], official["small_plain"]["inputs_embeds"]
    assert theirs.shape == their_plain.shape, "the official wrapper should have dropped the instruct"
    req = SynthesisRequest(ROWS[1]["text"], language="english", speaker="vivian", instruct=INSTRUCT)
    ours = tts.talker_inputs([req]).embeds
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    assert tts.supports_instruct is False


def test_clone_from_reference_audio_matches_official(official: OracleResults, no_eos_base: Path, clip) -> None:
    from qwen_tts import QwenTTS, SamplingParams, SynthesisRequest

    torch.set_num_threads(1)
    tts = QwenTTS.from_pretrained(no_eos_base)
    audio = clip.numpy()
    req = SynthesisRequest(ROWS[1]["text"], language="english", speaker_vector=tts.speaker_embedding(audio, CLIP_SR),
                           ref_codes=tts.codec.encode(audio, CLIP_SR), ref_text=REF_TEXT,
                           sampling=SamplingParams.greedy(1.0), max_frames=FRAMES)  # fmt: skip
    theirs = official["clone"]
    assert torch.equal(torch.stack(list(tts.generate_codes(req))), theirs["codes"])
    wav = torch.from_numpy(tts.synthesize(req))
    their_wav = theirs["wav"]
    assert their_wav.shape[0] - wav.shape[0] in (0, 1)  # the official proportional cut may keep one extra sample
    assert float((wav - their_wav[their_wav.shape[0] - wav.shape[0] :]).abs().max()) <= 1e-4


def test_big_vocabulary_tokenizes_like_official(official: OracleResults, big_vocab_tokenizer: Path) -> None:
    from transformers import AutoTokenizer

    from qwen_tts.tokenizer import TextTokenizer

    assert official.meta("tokenize")["vocab_size"] == BIG_VOCAB
    ours = TextTokenizer.from_pretrained(big_vocab_tokenizer)
    for i, text in enumerate(TOKENIZER_TEXTS):
        assert ours.encode(text) == official["tokenize"][f"ids_{i}"].tolist(), text
    # The input is sensitive: without the regex fix "iP" would merge across the case change.
    unfixed = AutoTokenizer.from_pretrained(str(big_vocab_tokenizer), fix_mistral_regex=False)
    assert unfixed(TOKENIZER_TEXTS[0], add_special_tokens=False)["input_ids"] != ours.encode(TOKENIZER_TEXTS[0])
