"""prepare_data (validate everything first, then encode), SFTConfig/CLI, checkpoint slot rules, the built-in PNG."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from finetuning.config import SFTConfig
from finetuning.prepare_data import Bounds, DataError, prepare


def _wav(path: Path, seconds: float, sr: int = 24000) -> Path:
    t = np.arange(int(sr * seconds)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr)
    return path


def _jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_prepare_reports_every_problem_before_encoding(tiny_base, tmp_path):
    _wav(tmp_path / "ok.wav", 1.0)
    _wav(tmp_path / "short.wav", 0.1)
    (tmp_path / "notaudio.wav").write_bytes(b"hello, not a wav")
    lines = [
        json.dumps({"audio": "ok.wav", "text": "hello world", "ref_audio": "ok.wav"}),
        json.dumps({"audio": "missing.wav", "text": "hello", "ref_audio": "ok.wav"}),
        json.dumps({"audio": "ok.wav", "text": "  ", "ref_audio": "ok.wav"}),
        "{not json",
        json.dumps({"audio": "short.wav", "text": "hi", "ref_audio": "notaudio.wav"}),
        json.dumps({"audio": "ok.wav", "text": "hi"}),
    ]
    out = tmp_path / "train.jsonl"
    with pytest.raises(DataError) as err:
        prepare(_jsonl(tmp_path / "raw.jsonl", lines), out, tiny_base, bounds=Bounds(0.5, 30))
    problems = err.value.problems
    assert len(problems) == 6, problems
    joined = "\n".join(problems)
    for fragment in ("line 2: audio 'missing.wav' does not exist", "line 3: 'text' must be a non-empty",
                     "line 4: not valid JSON", "line 5: audio 'short.wav' lasts 0.10 s",
                     "line 5: ref_audio 'notaudio.wav'", "line 6: 'ref_audio' is missing"):  # fmt: skip
        assert fragment in joined
    assert not out.exists()


def test_prepare_adds_the_codec_codes(tiny_base, tmp_path):
    from qwen_tts import Codec, load_audio
    from qwen_tts.audio import resample

    _wav(tmp_path / "a.wav", 1.0)
    _wav(tmp_path / "b.wav", 0.7, sr=16000)  # resampled to 24 kHz first
    lines = [json.dumps({"audio": n, "text": "hello", "ref_audio": "a.wav", "language": "english"})
             for n in ("a.wav", "b.wav", "a.wav")]  # fmt: skip
    out = tmp_path / "sub" / "train.jsonl"
    assert prepare(_jsonl(tmp_path / "raw.jsonl", lines), out, tiny_base, batch_size=2) == 3
    records = [json.loads(line) for line in out.read_text().splitlines()]
    codec = Codec.from_pretrained(tiny_base)
    waves = [resample(*load_audio(tmp_path / rec["audio"]), 24000) for rec in records]
    want = codec.encode_batch(waves[:2], 24000) + codec.encode_batch(waves[2:], 24000)  # the same batches of 2
    for rec, codes in zip(records, want, strict=True):
        assert rec["language"] == "english" and rec["text"] == "hello"  # input fields kept
        assert torch.equal(torch.tensor(rec["audio_codes"]), codes)
    assert torch.tensor(records[1]["audio_codes"]).shape == (9, 16)  # 0.7 s -> ceil(16800 / 1920) frames


def test_config_from_argv_and_bad_values():
    cfg = SFTConfig.from_argv(["--init-model", "m", "--train-jsonl", "t", "--speaker-name", "x", "--output-dir", "o",
                               "--lr", "1e-4", "--grad-accum-steps", "8", "--no-save-optimizer"])  # fmt: skip
    assert (cfg.lr, cfg.grad_accum_steps, cfg.save_optimizer, cfg.speaker_slot) == (1e-4, 8, False, 3000)
    assert cfg.sub_talker_loss_weight == 0.3 and cfg.weight_decay == 0.01
    with pytest.raises(ValueError, match="precision='fp16'"):
        SFTConfig(precision="fp16")
    with pytest.raises(ValueError, match="batch_size=0"):
        SFTConfig(batch_size=0)
    with pytest.raises(ValueError, match="--train-jsonl"):
        SFTConfig(init_model="m", speaker_name="x", output_dir="o").require_paths()


def test_cli_refuses_a_non_base_checkpoint(tiny_custom_voice, tmp_path, caplog):
    from finetuning.sft_12hz import main

    jsonl = _jsonl(tmp_path / "t.jsonl", [json.dumps({"text": "hi", "audio_codes": [[0] * 16], "ref_audio": "r"})])
    code = main(["--init-model", str(tiny_custom_voice), "--train-jsonl", str(jsonl), "--speaker-name", "anna",
                 "--output-dir", str(tmp_path / "out")])  # fmt: skip
    assert code == 2
    assert "fine-tuning starts from a Base checkpoint" in caplog.text


def test_speaker_slot_must_be_a_free_special_row(tiny_base):
    from finetuning.checkpoint import custom_voice_config, normalize_speaker_name
    from qwen_tts.loading import load_config

    config = load_config(tiny_base)
    assert custom_voice_config(config, "anna", 3000).talker_config.spk_id == {"anna": 3000}
    with pytest.raises(ValueError, match="codec_pad_id"):
        custom_voice_config(config, "anna", config.talker_config.codec_pad_id)
    with pytest.raises(ValueError, match="language english"):
        custom_voice_config(config, "anna", 2050)
    with pytest.raises(ValueError, match=r"\[2048, 3072\)"):
        custom_voice_config(config, "anna", 100)
    assert normalize_speaker_name(" Anna ") == "anna"
    with pytest.raises(ValueError, match="one word"):
        normalize_speaker_name("anna smith")


def test_builtin_png_is_a_valid_image():
    from finetuning.logs import _simple_png

    data = _simple_png([[3.0, 2.0, 1.5, 1.0], [2.0, 1.8, 1.2, 0.9]], width=40, height=20, margin=2)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (40, 20)
    idat_len = struct.unpack(">I", data[33:37])[0]
    raw = zlib.decompress(data[41 : 41 + idat_len])
    assert len(raw) == height * (1 + width * 3)
    assert raw.count(b"\xff") < len(raw)  # something was drawn
