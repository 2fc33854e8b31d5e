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


# -- a broken checkpoint folder: one CheckpointError, one line, naming the file and what to do ---------------------


def _broken(tiny_custom_voice, tmp_path, break_it):
    folder = _copy(tiny_custom_voice, tmp_path / "broken")
    break_it(folder)
    return folder


def _truncate(path, keep):
    data = path.read_bytes()
    path.write_bytes(data[: keep if keep >= 0 else len(data) + keep])


@pytest.mark.parametrize(
    "break_it,names",
    [
        (lambda f: _truncate(f / "model.safetensors", 0), ["model.safetensors", "empty"]),
        (lambda f: _truncate(f / "model.safetensors", -1000), ["model.safetensors", "truncated"]),
        (lambda f: _truncate(f / "model.safetensors", 5), ["model.safetensors", "not a safetensors file"]),
        (lambda f: _truncate(f / "speech_tokenizer/model.safetensors", -1), ["speech_tokenizer", "truncated"]),
        (lambda f: (f / "speech_tokenizer/model.safetensors").unlink(), ["speech_tokenizer", "missing"]),
        (lambda f: (f / "vocab.json").unlink(), ["vocab.json", "hf download"]),
        (lambda f: (f / "merges.txt").unlink(), ["merges.txt", "hf download"]),
        (lambda f: (f / "vocab.json").write_text("{\n"), ["vocab.json", "not valid JSON"]),
        (lambda f: (f / "config.json").write_text('{"talker_config":\n'), ["config.json", "not valid JSON", "line 2"]),
        (lambda f: (f / "config.json").write_text("[1, 2]"), ["config.json", "not an object"]),
        (lambda f: (f / "config.json").unlink(), ["no config.json", "qwen_tts.tiny"]),
        (lambda f: (f / "speech_tokenizer/config.json").write_text("{"), ["speech_tokenizer/config.json", "JSON"]),
        (lambda f: shutil.rmtree(f / "speech_tokenizer"), ["speech_tokenizer/config.json"]),
    ],
    ids=[
        "empty-weights", "truncated-weights", "header-cut", "truncated-codec", "missing-codec-weights",
        "missing-vocab", "missing-merges", "invalid-vocab", "invalid-config", "config-not-object", "missing-config",
        "invalid-codec-config", "missing-codec",
    ],
)  # fmt: skip
def test_broken_folder_is_one_line_naming_the_file(tiny_custom_voice, tmp_path, break_it, names):
    from qwen_tts import CheckpointError as Exported
    from qwen_tts import QwenTTS

    folder = _broken(tiny_custom_voice, tmp_path, break_it)
    with pytest.raises(Exported) as caught:
        QwenTTS.from_pretrained(folder, load_codec_encoder=False)
    message = str(caught.value)
    assert "\n" not in message and str(folder) in message
    for name in names:
        assert name in message


def test_broken_weights_fail_before_any_tensor_is_loaded(tiny_custom_voice, tmp_path, monkeypatch):
    """A truncated codec file is found by the folder check, not after the (for 1.7B: slow) talker load."""
    import qwen_tts.loading

    folder = _broken(tiny_custom_voice, tmp_path, lambda f: _truncate(f / "speech_tokenizer/model.safetensors", -1))
    monkeypatch.setattr(qwen_tts.loading, "build_empty", lambda config: pytest.fail("model built before the check"))
    from qwen_tts import QwenTTS

    with pytest.raises(CheckpointError, match="truncated"):
        QwenTTS.from_pretrained(folder)


def test_a_valid_folder_passes_the_check_and_loads(tiny_custom_voice):
    from qwen_tts import QwenTTS
    from qwen_tts.loading import verify_checkpoint

    assert verify_checkpoint(tiny_custom_voice) == tiny_custom_voice
    assert "ryan" in QwenTTS.from_pretrained(tiny_custom_voice, load_codec_encoder=False).speakers


def test_config_value_errors_name_the_file(tiny_custom_voice, tmp_path):
    def bad_value(folder):
        raw = json.loads((folder / "config.json").read_text())
        raw["tts_model_type"] = "singer"
        (folder / "config.json").write_text(json.dumps(raw))

    folder = _broken(tiny_custom_voice, tmp_path, bad_value)
    with pytest.raises(CheckpointError, match=r"config\.json .*singer"):
        load_model(folder)


def test_a_folder_that_is_not_a_checkpoint(tiny_custom_voice, tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(CheckpointError, match="not a Qwen3-TTS checkpoint folder"):
        load_model(tmp_path / "photos")
    with pytest.raises(CheckpointError, match="no talker_config"):  # the codec's folder passed by mistake
        load_model(tiny_custom_voice / "speech_tokenizer")
    with pytest.raises(CheckpointError, match="is a file"):
        load_model(tiny_custom_voice / "config.json")


def test_a_missing_relative_path_is_local_not_a_hub_id(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda **kw: pytest.fail(f"hub asked for {kw}"))
    (tmp_path / "ckpt").mkdir()
    for name in ("ckpt/custom_voice", "./custom_voice", "models/ckpt/custom_voice", "~/nope/x", "my ckpt/voice"):
        with pytest.raises(CheckpointError, match="does not exist") as caught:
            resolve_checkpoint(name)
        assert "\n" not in str(caught.value)
    with pytest.raises(CheckpointError, match=str(tmp_path / "ckpt" / "custom_voice")):
        resolve_checkpoint("ckpt/custom_voice")


def test_owner_slash_name_is_a_hub_id_and_its_failure_says_both(tmp_path, monkeypatch):
    import huggingface_hub

    asked = []

    def offline(**kwargs):
        asked.append(kwargs["repo_id"])
        raise OSError("no network\nsecond line")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(CheckpointError) as caught:
        resolve_checkpoint("Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice")
    assert asked == ["Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice"]
    message = str(caught.value)
    assert "\n" not in message and "not a local folder" in message and "no network second line" in message
    assert "hf download Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice --local-dir" in message


def test_sharded_index_errors_name_the_index(tiny_custom_voice, tmp_path):
    folder = _broken(tiny_custom_voice, tmp_path, lambda f: (f / "model.safetensors").unlink())
    (folder / "model.safetensors.index.json").write_text('{"weight_map": {"a": "model-00001.safetensors"}}')
    with pytest.raises(CheckpointError, match=r"model-00001\.safetensors is missing"):
        load_model(folder)
    (folder / "model.safetensors.index.json").write_text("{}")
    with pytest.raises(CheckpointError, match="no weight_map"):
        load_model(folder)


@pytest.mark.parametrize("header", [b"[1, 2]", b'{"a": {"dtype": "F32"}}', b'{"a": 3}', b"\xff\xfe not json"])
def test_a_damaged_safetensors_header_is_named(tmp_path, header):
    import struct

    from qwen_tts.checkpoint import check_safetensors

    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    with pytest.raises(CheckpointError, match="damaged header"):
        check_safetensors(path)
