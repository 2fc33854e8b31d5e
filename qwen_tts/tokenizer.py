"""Text tokenizer: the checkpoint's Qwen2 byte-level BPE through transformers, plus a tiny one for test checkpoints.

``TextTokenizer.from_pretrained(dir)`` loads vocab.json + merges.txt (+ tokenizer_config.json) as a
``PreTrainedTokenizerFast`` and turns the three prompt strings of the official package into id lists, sliced by
position exactly as the official code does (it never hard-codes a token id).

``write_tiny_tokenizer(dir)`` writes a ~400-token byte-level BPE in the same file layout: specials at ids 0..5,
``<|im_start|>``/``<|im_end|>`` single special tokens, and ``assistant``, ``user`` and ``\\n`` single tokens (the
prompt slicing depends on that).
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path

from qwen_tts.checkpoint import REDOWNLOAD, CheckpointError, one_line, read_json

log = logging.getLogger(__name__)

TOKENIZER_FILES = ("vocab.json", "merges.txt")

TINY_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tts_pad>", "<tts_text_bos>", "<tts_text_eod>"]
# Chains of prefix merges; the prompt's role words come first so no other merge can split them.
_ROLE_WORDS = ["assistant", "user"]
_WORDS = [
    "Ġthe", "Ġand", "Ġhello", "Ġworld", "Ġvoice", "Ġstory", "Ġonce", "Ġupon", "Ġtime", "Ġnarrator", "Ġis", "Ġa",
    "Ġof", "Ġto", "Ġin", "Ġit", "Ġthat", "Ġyou", "Ġwas", "Ġhe", "Ġshe", "Ġsaid", "Ġdragon", "Ġcastle", "Ġnight",
    "Hello", "The", "Once", "ing", "ed", "er", "Ġ.", "Ġspeak", "Ġcalm", "Ġangry", "Ġhappy", "Ġsad", "Ġwhisper",
]  # fmt: skip


@lru_cache(maxsize=1)
def byte_alphabet() -> dict[int, str]:
    """The byte -> printable character map of byte-level BPE (GPT-2 style): printable bytes map to themselves."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _tiny_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    vocab = {tok: i for i, tok in enumerate(TINY_SPECIALS)}  # listed in vocab.json too, so they keep ids 0..5
    vocab.update({byte_alphabet()[b]: len(TINY_SPECIALS) + b for b in range(256)})
    merges: list[tuple[str, str]] = []
    for word in _ROLE_WORDS + _WORDS:
        prefix = word[0]
        for ch in word[1:]:
            if prefix + ch not in vocab:
                merges.append((prefix, ch))
                vocab[prefix + ch] = len(vocab)
            prefix += ch
    return vocab, merges


def write_tiny_tokenizer(folder: str | Path) -> dict[str, int]:
    """Write vocab.json, merges.txt and tokenizer_config.json; returns the config.json text ids for them."""
    out = Path(folder)
    vocab, merges = _tiny_vocab_and_merges()
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    lines = ["#version: 0.2", *(f"{a} {b}" for a, b in merges)]
    (out / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    added = {
        str(i): {"content": tok, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
                 "special": True}
        for i, tok in enumerate(TINY_SPECIALS)
    }  # fmt: skip
    config = {
        "add_bos_token": False, "add_prefix_space": False, "added_tokens_decoder": added, "bos_token": None,
        "clean_up_tokenization_spaces": False, "eos_token": "<|im_end|>", "errors": "replace",
        "model_max_length": 32768, "pad_token": "<|endoftext|>", "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer", "unk_token": None,
    }  # fmt: skip
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    ids = {
        "im_start_token_id": 1, "im_end_token_id": 2, "tts_pad_token_id": 3, "tts_bos_token_id": 4,
        "tts_eos_token_id": 5, "assistant_token_id": vocab["assistant"],
    }  # fmt: skip
    _check_prompt_tokens(TextTokenizer.from_pretrained(out), ids)
    return ids


def _check_prompt_tokens(tok: TextTokenizer, ids: dict[str, int]) -> None:
    got = tok.encode("<|im_start|>assistant\n")
    want = [ids["im_start_token_id"], ids["assistant_token_id"], tok.encode("\n")[0]]
    if got != want or len(tok.encode("\n")) != 1 or len(tok.encode("<|im_start|>user\n")) != 3:
        raise AssertionError(f"tiny tokenizer splits a prompt token: {got} != {want}")


def check_tokenizer_files(folder: Path) -> None:
    """The text tokenizer's files are there: vocab.json + merges.txt (the released layout) or one tokenizer.json.

    Checked before transformers is asked: without them it falls back to other tokenizer classes and fails with an
    ImportError about protobuf or sentencepiece, which sends the operator the wrong way.
    """
    if (folder / "tokenizer.json").is_file():
        return
    missing = [name for name in TOKENIZER_FILES if not (folder / name).is_file()]
    if missing:
        raise CheckpointError(
            f"{folder} has no {' and no '.join(missing)} (files of the text tokenizer); copy them from the same hub "
            f"repo (`hf download REPO_ID {' '.join(TOKENIZER_FILES)} --local-dir {folder}`) or {REDOWNLOAD}"
        )
    read_json(folder / "vocab.json", "the tokenizer vocabulary")


class TextTokenizer:
    """The checkpoint's text tokenizer and the three prompt strings of the official package."""

    def __init__(self, hf_tokenizer):
        self.hf = hf_tokenizer

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> TextTokenizer:
        """The tokenizer of a checkpoint folder; CheckpointError naming the file when one is missing or broken."""
        from transformers import AutoTokenizer

        check_tokenizer_files(Path(folder))
        try:
            # fix_mistral_regex=True as the official processor: it changes the split regex of the real 151k vocab.
            hf = AutoTokenizer.from_pretrained(str(folder), padding_side="left", fix_mistral_regex=True)
        except Exception as exc:  # OSError, ValueError, a misleading ImportError...: the files are what is wrong
            raise CheckpointError(
                f"cannot load the text tokenizer from {folder} ({one_line(exc)}); the folder needs vocab.json, "
                f"merges.txt and tokenizer_config.json from the checkpoint: {REDOWNLOAD}"
            ) from exc
        return cls(hf)

    def __len__(self) -> int:
        return len(self.hf)

    def encode(self, text: str) -> list[int]:
        """Plain ids, no special tokens added (special token strings in ``text`` are still recognised)."""
        return list(self.hf(text, add_special_tokens=False)["input_ids"])

    def target_ids(self, text: str) -> tuple[list[int], list[int]]:
        """(role ids (3), text ids T) of ``<|im_start|>assistant\\n{text}<|im_end|>\\n<|im_start|>assistant\\n``."""
        ids = self.encode(f"<|im_start|>assistant\n{text}<|im_end|>\n<|im_start|>assistant\n")
        return ids[:3], ids[3:-5]

    def ref_ids(self, ref_text: str) -> list[int]:
        """Reference transcript ids R: ``<|im_start|>assistant\\n{ref}<|im_end|>\\n`` sliced [3:-2]."""
        return self.encode(f"<|im_start|>assistant\n{ref_text}<|im_end|>\n")[3:-2]

    def instruct_ids(self, instruct: str) -> list[int]:
        """All ids of ``<|im_start|>user\\n{instruct}<|im_end|>\\n``."""
        return self.encode(f"<|im_start|>user\n{instruct}<|im_end|>\n")
