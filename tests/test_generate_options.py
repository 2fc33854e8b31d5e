"""Run-time options: one object, one environment rule, constants from the checkpoint's config."""

from __future__ import annotations

import pytest
import torch

from qwen_tts import QwenTTS
from qwen_tts.options import RuntimeOptions, parse_dtype, with_env


def test_env_switches_follow_one_rule():
    base = RuntimeOptions(compile=True)
    assert with_env(base, {}) == base
    assert with_env(base, {"QWEN_TTS_EAGER": "yes"}).eager
    assert not with_env(base, {"QWEN_TTS_EAGER": "off"}).eager
    assert not with_env(base, {"QWEN_TTS_NO_COMPILE": "1"}).compile
    assert not with_env(base, {"QWEN_TTS_NO_CUDA_GRAPH": "true"}).compile  # the older name of the kill switch
    assert with_env(base, {"QWEN_TTS_CPU_THREADS": "3"}).cpu_threads == 3
    for name, value in (("QWEN_TTS_EAGER", "maybe"), ("QWEN_TTS_NO_COMPILE", "2"), ("QWEN_TTS_CPU_THREADS", "0")):
        with pytest.raises(ValueError, match=name):
            with_env(base, {name: value})


def test_options_check_their_fields():
    assert parse_dtype("bf16") is torch.bfloat16
    assert RuntimeOptions(dtype="float32").dtype is torch.float32
    with pytest.raises(ValueError, match="dtype"):
        RuntimeOptions(dtype="float8")
    with pytest.raises(ValueError, match="cpu_threads"):
        RuntimeOptions(cpu_threads=0)
    assert RuntimeOptions(compile=True).wants_compiled_step
    assert not RuntimeOptions(compile=True, eager=True).wants_compiled_step


def test_from_pretrained_takes_options_and_ignores_bot_variables(tiny_custom_voice, monkeypatch):
    monkeypatch.setenv("NARRATOR_COMPILE", "0")  # a bot setting: qwen_tts must not read it
    opts = RuntimeOptions(compile=True, cpu_threads=1, compile_cache_dir="/tmp/somewhere")
    tts = QwenTTS.from_pretrained(tiny_custom_voice, load_codec_encoder=False, options=opts)
    assert tts.options == opts and tts.speed_path_active
    monkeypatch.setenv("QWEN_TTS_NO_COMPILE", "1")
    off = QwenTTS.from_pretrained(tiny_custom_voice, load_codec_encoder=False, options=opts)
    assert not off.options.compile and not off.speed_path_active
    legacy = QwenTTS.from_pretrained(tiny_custom_voice, load_codec_encoder=False, cpu_threads=2)
    assert legacy.options.cpu_threads == 2 and legacy.options.device == "cpu"


def test_audio_constants_come_from_the_codec_config(tiny_custom_voice):
    tts = QwenTTS.from_pretrained(tiny_custom_voice, load_codec_encoder=False)
    cfg = tts.codec.config
    assert tts.sample_rate == cfg.output_sample_rate == 24000
    assert tts.samples_per_frame == cfg.decode_upsample_rate == 1920
    assert tts.frame_rate == cfg.output_sample_rate / cfg.decode_upsample_rate == 12.5
    assert tts.num_code_groups == tts.config.talker_config.num_code_groups == 16
    tc = tts.config.talker_config
    assert tc.control_id_start == tc.vocab_size - 1024 == tc.codebook_size
