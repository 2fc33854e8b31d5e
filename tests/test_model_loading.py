"""Config round trip, strict loading errors, save/load round trip, tiny checkpoint reproducibility."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from qwen_tts.config import Qwen3TTSConfig
from qwen_tts.loading import CheckpointError, load_model, resolve_checkpoint, save_model
from qwen_tts.tiny import write_tiny_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_config_round_trip_keeps_every_key(tiny_custom_voice):
    raw = json.loads((tiny_custom_voice / "config.json").read_text())
    raw["some_future_key"] = {"x": 1}
    raw["talker_config"]["another_unknown"] = 3
    cfg = Qwen3TTSConfig.from_dict(raw)
    assert cfg.to_dict() == raw
    assert cfg.talker_config.spk_id["vivian"] == 3065
    assert cfg.talker_config.spk_is_dialect["eric"] == "sichuan_dialect"
    assert cfg.talker_config.code_predictor_config.hidden_size != cfg.talker_config.hidden_size


def test_config_rejects_missing_codec_id(tiny_custom_voice):
    raw = json.loads((tiny_custom_voice / "config.json").read_text())
    del raw["talker_config"]["codec_bos_id"]
    with pytest.raises(ValueError, match="codec_bos_id"):
        Qwen3TTSConfig.from_dict(raw)


def test_config_rejects_unknown_model_type(tiny_custom_voice):
    raw = json.loads((tiny_custom_voice / "config.json").read_text())
    raw["tts_model_type"] = "singer"
    with pytest.raises(ValueError, match="singer"):
        Qwen3TTSConfig.from_dict(raw)


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _edit_weights(folder, edit):
    tensors = load_file(folder / "model.safetensors")
    edit(tensors)
    save_file(tensors, folder / "model.safetensors")


def test_missing_key_is_named(tiny_custom_voice, tmp_path):
    folder = _copy(tiny_custom_voice, tmp_path / "ck")
    _edit_weights(folder, lambda t: t.pop("talker.codec_head.weight"))
    with pytest.raises(CheckpointError, match=r"missing keys: talker\.codec_head\.weight"):
        load_model(folder)


def test_unexpected_key_is_named(tiny_custom_voice, tmp_path):
    folder = _copy(tiny_custom_voice, tmp_path / "ck")
    _edit_weights(folder, lambda t: t.__setitem__("talker.extra.weight", torch.zeros(2)))
    with pytest.raises(CheckpointError, match=r"unexpected keys: talker\.extra\.weight"):
        load_model(folder)


def test_shape_mismatch_is_named(tiny_custom_voice, tmp_path):
    folder = _copy(tiny_custom_voice, tmp_path / "ck")
    _edit_weights(folder, lambda t: t.__setitem__("talker.model.norm.weight", torch.ones(7)))
    with pytest.raises(CheckpointError, match=r"talker\.model\.norm\.weight \(file \(7,\), model \(32,\)\)"):
        load_model(folder)


def test_missing_folder_and_offline_hub_id_say_what_to_do(tmp_path, monkeypatch):
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_checkpoint(tmp_path / "nope")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="local folder"):
        resolve_checkpoint("Qwen/definitely-not-cached-here")


def test_base_has_speaker_encoder_and_others_do_not(tiny_base, tiny_voice_design):
    assert any(k.startswith("speaker_encoder.") for k in load_model(tiny_base).state_dict())
    assert not any(k.startswith("speaker_encoder.") for k in load_model(tiny_voice_design).state_dict())


def test_save_load_round_trip_bitwise(tiny_base, tmp_path):
    model = load_model(tiny_base)
    save_model(model, tmp_path / "out")
    again = load_model(tmp_path / "out")
    a, b = model.state_dict(), again.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_dtype_is_applied(tiny_custom_voice):
    model = load_model(tiny_custom_voice, dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_tiny_checkpoint_is_byte_reproducible_and_seeded(tmp_path, tiny_custom_voice):
    again = write_tiny_checkpoint(tmp_path / "a", "custom_voice", seed=0)
    other = write_tiny_checkpoint(tmp_path / "b", "custom_voice", seed=1)
    for name in ("model.safetensors", "config.json", "vocab.json", "merges.txt", "tokenizer_config.json"):
        assert _md5(again / name) == _md5(tiny_custom_voice / name)
    assert _md5(other / "model.safetensors") != _md5(again / "model.safetensors")


def test_eos_never_zeroes_the_eos_row(tmp_path):
    folder = write_tiny_checkpoint(tmp_path / "n", "voice_design", eos="never")
    model = load_model(folder)
    eos = model.config.talker_config.codec_eos_token_id
    assert torch.count_nonzero(model.talker.codec_head.weight[eos]) == 0
    assert torch.count_nonzero(model.talker.codec_head.weight[eos - 1]) > 0


@pytest.mark.parametrize(
    "size,keys,params,predictor,speaker",
    [("0.6b", 478, 914_643_008, 141_570_304, 8_854_336), ("1.7b", 480, 1_928_677_440, 175_125_760, 12_001_088)],
)
def test_full_size_module_tree_matches_the_released_checkpoints(size, keys, params, predictor, speaker):
    """Key counts and parameter counts of the released Base checkpoints (meta device: no memory used)."""
    from qwen_tts.loading import build_empty
    from qwen_tts.tiny import tiny_config

    state = build_empty(tiny_config("base", size, {"tts_pad_token_id": 3})).state_dict()

    def count(prefix=""):
        return sum(v.numel() for k, v in state.items() if k.startswith(prefix))

    assert (len(state), count(), count("talker.code_predictor."), count("speaker_encoder.")) == (
        keys, params, predictor, speaker,
    )  # fmt: skip
    assert state["talker.model.text_embedding.weight"].shape == (151936, 2048)


def test_cli_writes_a_loadable_checkpoint(tmp_path):
    from qwen_tts.tiny import main

    assert main([str(tmp_path / "cli"), "--type", "voice_design", "--seed", "5"]) == 0
    model = load_model(tmp_path / "cli")
    assert model.model_type == "voice_design" and model.config.talker_config.spk_id == {}
    for name in (
        "generation_config.json",
        "vocab.json",
        "merges.txt",
        "tokenizer_config.json",
        "preprocessor_config.json",
        "speech_tokenizer/config.json",
        "speech_tokenizer/model.safetensors",
    ):
        assert (tmp_path / "cli" / name).is_file(), name
