"""Fine-tuning suite on a tiny Base checkpoint with synthetic audio (CPU): layout, loss, overfit, export, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from finetuning.config import SFTConfig
from finetuning.data import IGNORE_INDEX, SFTDataset, build_example, collate, read_jsonl
from finetuning.loss import compute_loss
from qwen_tts.loading import load_model
from qwen_tts.tokenizer import TextTokenizer

TEXTS = ["hello world", "once upon a time the dragon", "the narrator said"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tone(path: Path, seconds: float, freq: float, seed: int) -> Path:
    t = np.arange(int(24000 * seconds)) / 24000
    noise = np.random.default_rng(seed).standard_normal(t.shape)
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * noise).astype(np.float32), 24000)
    return path


@pytest.fixture(scope="module")
def train_jsonl(tiny_base, tmp_path_factory) -> Path:
    """3 synthetic clips (0.6-1.2 s) with transcripts and one reference clip, encoded with prepare_data."""
    from finetuning.prepare_data import prepare

    folder = tmp_path_factory.mktemp("ft_data")
    _tone(folder / "ref.wav", 1.5, 180.0, 9)
    lines = []
    for i, text in enumerate(TEXTS):
        _tone(folder / f"clip{i}.wav", 0.6 + 0.3 * i, 200.0 + 40 * i, i)
        lines.append(json.dumps({"audio": f"clip{i}.wav", "text": text, "ref_audio": "ref.wav"}))
    (folder / "raw.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    prepare(folder / "raw.jsonl", folder / "train.jsonl", tiny_base, batch_size=2)
    return folder / "train.jsonl"


def _cfg(tiny_base, jsonl: Path, out: Path, **kw) -> SFTConfig:
    base = dict(init_model=str(tiny_base), train_jsonl=str(jsonl), speaker_name="Anna", output_dir=str(out),
                lr=3e-3, grad_accum_steps=1, batch_size=2, num_epochs=1000)  # fmt: skip
    return SFTConfig(**{**base, **kw})


# -- data layout -----------------------------------------------------------------------------------------------------
def test_example_follows_the_training_table(tiny_base):
    """Positions of the reference table (qwen3-tts-model.md section 5) for role(3) + n text ids + T frames."""
    model = load_model(tiny_base)
    cfg, tc = model.config, model.config.talker_config
    role, text = [1, 7, 8], [20, 21, 22, 23]
    codes = torch.randint(0, 2048, (5, 16), generator=torch.Generator().manual_seed(0))
    ex = build_example(cfg, role, text, codes)
    n, frames = len(text), codes.shape[0]
    pad, bos, eos = cfg.tts_pad_token_id, cfg.tts_bos_token_id, cfg.tts_eos_token_id
    assert len(ex) == 8 + n + frames + 3
    want_text = role + [pad] * 4 + [bos] + text + [eos, pad] + [pad] * frames + [pad]
    assert ex.text_ids.tolist() == want_text and bool(ex.text_mask.all())
    prefix = [tc.codec_nothink_id, tc.codec_think_bos_id, tc.codec_think_eos_id]
    assert ex.codec_ids[3:6].tolist() == prefix
    assert ex.speaker_mask.nonzero().flatten().tolist() == [6]
    assert not ex.codec_mask[:3].any() and not ex.codec_mask[6]
    assert ex.codec_ids[7 : 8 + n + 1].tolist() == [tc.codec_pad_id] * (n + 2)
    assert ex.codec_ids[8 + n + 1] == tc.codec_bos_id
    body = slice(8 + n + 2, 8 + n + 2 + frames)
    assert torch.equal(ex.codec_ids[body], codes[:, 0]) and torch.equal(ex.frame_codes[body], codes)
    assert ex.frame_mask.nonzero().flatten().tolist() == list(range(8 + n + 2, 8 + n + 2 + frames))
    assert ex.codec_ids[-1] == tc.codec_eos_token_id
    labels = ex.labels.tolist()
    assert labels[: 8 + n + 2] == [IGNORE_INDEX] * (8 + n + 2)
    assert labels[body] == codes[:, 0].tolist() and labels[-1] == tc.codec_eos_token_id


def test_collate_right_pads(tiny_base, train_jsonl):
    model = load_model(tiny_base)
    ds = SFTDataset(read_jsonl(train_jsonl), TextTokenizer.from_pretrained(tiny_base), model.config)
    batch = collate([ds[0], ds[2]])
    lengths = [len(ds[0]), len(ds[2])]
    assert batch["labels"].shape == (2, max(lengths)) and batch["frame_codes"].shape == (2, max(lengths), 16)
    assert batch["attention_mask"].sum(1).tolist() == lengths
    short = int(np.argmin(lengths))
    assert (batch["labels"][short, min(lengths) :] == IGNORE_INDEX).all()
    assert not batch["frame_mask"][short, min(lengths) :].any()


# -- loss ------------------------------------------------------------------------------------------------------------
def _reference_loss(talker, cfg, examples, xvec, weight):
    """Position by position from the module tensors, one unpadded sample at a time (the official recipe with its
    four alignment fixes: text_projection, one label shift, hidden at p - 1 for the predictor, head j -> codebook j)."""
    tc = cfg.talker_config
    cp = talker.code_predictor

    def text(i):
        return talker.text_projection(talker.model.text_embedding.weight[i])

    def emb(g, c):
        return talker.model.codec_embedding.weight[c] if g == 0 else cp.model.codec_embedding[g - 1].weight[c]

    pad, bos, eos = cfg.tts_pad_token_id, cfg.tts_bos_token_id, cfg.tts_eos_token_id
    main, sub = [], []
    for role, ids, codes in examples:
        rows = [text(t) for t in role]
        rows += [text(pad) + emb(0, c) for c in (tc.codec_nothink_id, tc.codec_think_bos_id, tc.codec_think_eos_id)]
        rows += [text(pad) + xvec, text(bos) + emb(0, tc.codec_pad_id)]
        rows += [text(t) + emb(0, tc.codec_pad_id) for t in [*ids, eos]] + [text(pad) + emb(0, tc.codec_bos_id)]
        start = len(rows)
        rows += [text(pad) + sum(emb(g, codes[t, g]) for g in range(16)) for t in range(codes.shape[0])]
        rows.append(text(pad) + emb(0, tc.codec_eos_token_id))
        hidden = talker.model.run_layers(torch.stack(rows)[None], None)[0]
        logp = torch.log_softmax(talker.codec_head(hidden), dim=-1)
        for k, target in enumerate([*codes[:, 0].tolist(), tc.codec_eos_token_id]):
            main.append(-logp[start - 1 + k, target])
        for t in range(codes.shape[0]):
            seq = [hidden[start - 1 + t], emb(0, codes[t, 0])] + [emb(g, codes[t, g]) for g in range(1, 15)]
            h = cp.model.run_layers(cp.small_to_mtp_projection(torch.stack(seq)[None]), None)[0]
            sub += [-torch.log_softmax(cp.lm_head[j - 1](h[j]), -1)[codes[t, j]] for j in range(1, 16)]
    return torch.stack(main).mean() + weight * torch.stack(sub).mean()


def test_loss_equals_straightforward_reference(tiny_base, train_jsonl):
    model = load_model(tiny_base)
    tok = TextTokenizer.from_pretrained(tiny_base)
    records = read_jsonl(train_jsonl)
    ds = SFTDataset(records, tok, model.config)
    xvec = torch.randn(model.config.talker_config.hidden_size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours = compute_loss(model.talker, collate([ds[0], ds[1], ds[2]]), xvec, 0.3)
        samples = [(*tok.target_ids(r["text"]), torch.tensor(r["audio_codes"])) for r in records]
        ref = _reference_loss(model.talker, model.config, samples, xvec, 0.3)
    torch.testing.assert_close(ours.loss, ref, rtol=1e-5, atol=1e-5)
    assert ours.loss > ours.talker_loss > 0  # both parts present


def test_loss_uses_text_projection(tiny_base, train_jsonl):
    """The official script's bug: without text_projection the loss would not depend on the projection weights."""
    model = load_model(tiny_base)
    ds = SFTDataset(read_jsonl(train_jsonl), TextTokenizer.from_pretrained(tiny_base), model.config)
    batch, xvec = collate([ds[0]]), torch.zeros(model.config.talker_config.hidden_size)
    with torch.no_grad():
        before = compute_loss(model.talker, batch, xvec, 0.3).talker_loss
        model.talker.text_projection.linear_fc2.bias.add_(0.5)
        after = compute_loss(model.talker, batch, xvec, 0.3).talker_loss
    assert not torch.allclose(before, after)


# -- training, export, resume ----------------------------------------------------------------------------------------
def test_two_sample_overfit_exports_a_loadable_custom_voice(tiny_base, train_jsonl, tmp_path):
    from finetuning.sft_12hz import run
    from qwen_tts import QwenTTS, SynthesisRequest, load_audio

    two = tmp_path / "two.jsonl"
    two.write_text("".join(line + "\n" for line in train_jsonl.read_text().splitlines()[:2]), encoding="utf-8")
    for wav in train_jsonl.parent.glob("*.wav"):
        (tmp_path / wav.name).symlink_to(wav)
    folder = run(_cfg(tiny_base, two, tmp_path / "out", max_steps=30, save_every_steps=15))
    rows = (tmp_path / "out" / "train_log.csv").read_text().splitlines()[1:]
    losses = [float(r.split(",")[2]) for r in rows]
    assert len(losses) == 30 and losses[-1] < 0.4 * losses[0], losses
    assert folder.name == "checkpoint-step-000030"
    for name in ("config.json", "model.safetensors", "meta_000030.json", "loss_curve.png", "train_log.csv",
                 "vocab.json", "speech_tokenizer"):  # fmt: skip
        assert (folder / name).exists(), name
    assert (folder / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = json.loads((folder / "config.json").read_text())
    assert config["tts_model_type"] == "custom_voice"
    assert config["talker_config"]["spk_id"] == {"anna": 3000}
    assert config["talker_config"]["spk_is_dialect"] == {"anna": False}

    tts = QwenTTS.from_pretrained(folder)  # strict key/shape checks
    assert tts.model_type == "custom_voice" and tts.speakers == ["anna"]
    assert not any(k.startswith("speaker_encoder.") for k in tts.model.state_dict())
    base = load_model(tiny_base)
    from qwen_tts.speaker_encoder import speaker_embedding

    xvec = speaker_embedding(base.speaker_encoder, *load_audio(train_jsonl.parent / "ref.wav"))
    torch.testing.assert_close(tts.speaker_row("anna"), xvec)
    trained = tts.model.talker.codec_head.weight
    assert not torch.allclose(trained, base.talker.codec_head.weight)  # the weights did move
    wav = tts.synthesize(SynthesisRequest("hello world", speaker="anna", max_frames=6))
    assert wav.ndim == 1 and 0 < wav.shape[0] <= 6 * 1920 and np.isfinite(wav).all()

    _training_prompt_is_the_inference_prompt(tts, train_jsonl)

    from bot.cli.voices import inspect_checkpoint  # what `narrator voices import DIR --name anna` accepts

    speaker, timbre = inspect_checkpoint(folder, None, "anna")
    assert speaker == "anna" and len(timbre) > 0


def _training_prompt_is_the_inference_prompt(tts, train_jsonl: Path) -> None:
    """On the exported model: the training sequence up to codec_bos equals the prefill that QwenTTS builds for
    speaker "anna", and the training logits there equal the first codebook-0 distribution of generation."""
    from finetuning.loss import talker_input_embeds
    from qwen_tts import SynthesisRequest
    from qwen_tts.generate import prefill_logits

    record = read_jsonl(train_jsonl)[1]
    ds = SFTDataset([record], tts.tokenizer, tts.config)
    batch = collate([ds[0]])
    inputs = tts.talker_inputs([SynthesisRequest(record["text"], speaker="anna")])
    prompt_len = inputs.embeds.shape[1]
    assert int(batch["labels"][0, prompt_len]) == record["audio_codes"][0][0]  # first frame right after the prompt
    with torch.no_grad():
        embeds = talker_input_embeds(tts.model.talker, batch, tts.speaker_row("anna"))
        torch.testing.assert_close(embeds[0, :prompt_len], inputs.embeds[0], rtol=1e-5, atol=1e-5)
        train_logits = tts.model.talker.codec_head(tts.model.talker.model.run_layers(embeds, None))
        first, _ = prefill_logits(tts.model, inputs)
    torch.testing.assert_close(train_logits[0, prompt_len - 1], first[0], rtol=1e-4, atol=1e-4)


def test_resume_continues_at_the_same_step(tiny_base, train_jsonl, tmp_path):
    """3 samples, batch 1, accumulation 2: steps end mid-epoch and on the epoch's partial accumulation. Resuming
    from step 1 must give the same step-4 weights, optimizer state and log rows as one uninterrupted run."""
    from safetensors.torch import load_file

    from finetuning.sft_12hz import main, run

    kw = dict(batch_size=1, grad_accum_steps=2, max_steps=4, save_every_steps=1, lr=1e-3)
    straight = run(_cfg(tiny_base, train_jsonl, tmp_path / "a", **kw))
    first = tmp_path / "a" / "checkpoint-step-000001"
    assert json.loads((first / "meta_000001.json").read_text())["batch"] == 2  # mid-epoch
    argv = ["--init-model", str(tiny_base), "--train-jsonl", str(train_jsonl), "--speaker-name", "anna",
            "--output-dir", str(tmp_path / "b"), "--resume-from", str(first), "--batch-size", "1",
            "--grad-accum-steps", "2", "--max-steps", "4", "--save-every-steps", "1", "--lr", "1e-3"]  # fmt: skip
    assert main(argv) == 0  # the CLI entry point
    resumed = tmp_path / "b" / "checkpoint-step-000004"
    assert straight.name == resumed.name
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-7, msg=key)
    rows_b = (tmp_path / "b" / "train_log.csv").read_text().splitlines()
    steps_b = [int(r.split(",")[0]) for r in rows_b[1:]]
    assert steps_b == [2, 3, 4]
    loss_a = {int(r.split(",")[0]): float(r.split(",")[2]) for r in (tmp_path / "a" / "train_log.csv").read_text()
              .splitlines()[1:]}  # fmt: skip
    for row in rows_b[1:]:
        step, loss = int(row.split(",")[0]), float(row.split(",")[2])
        assert loss == pytest.approx(loss_a[step], rel=1e-5)


def test_bf16_autocast_step_keeps_fp32_master_weights(tiny_base, train_jsonl):
    """The GPU recipe's mixed precision (bf16 autocast, fp32 weights and AdamW state), exercised on the CPU."""
    from finetuning.train import Trainer

    model = load_model(tiny_base)
    ds = SFTDataset(read_jsonl(train_jsonl), TextTokenizer.from_pretrained(tiny_base), model.config)
    batch = collate([ds[0], ds[1]])
    xvec = torch.randn(model.config.talker_config.hidden_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        fp32_loss = compute_loss(model.talker, batch, xvec, 0.3).loss.item()
    cfg = SFTConfig(precision="bf16", grad_accum_steps=1, lr=3e-3)
    trainer = Trainer(cfg, model, xvec, torch.device("cpu"))
    losses = [trainer.train_step(batch)["loss"] for _ in range(4)]
    assert trainer.autocast == torch.bfloat16
    assert losses[0] == pytest.approx(fp32_loss, rel=0.05)  # bf16 rounding only
    assert losses[-1] < losses[0]
    assert all(p.dtype == torch.float32 for p in model.talker.parameters())
    state = trainer.optimizer.state[model.talker.codec_head.weight]
    assert state["exp_avg"].dtype == torch.float32 and trainer.position.step == 4


def test_bf16_checkpoint_exports_bf16_and_resumes_from_fp32_master_weights(tiny_base, train_jsonl, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from finetuning.checkpoint import MASTER_WEIGHTS
    from finetuning.sft_12hz import run
    from qwen_tts import QwenTTS

    init = tmp_path / "base_bf16"
    shutil.copytree(tiny_base, init)
    state = load_file(init / "model.safetensors")
    save_file({k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in state.items()},
              init / "model.safetensors", metadata={"format": "pt"})  # fmt: skip
    kw = dict(max_steps=2, save_every_steps=1, lr=1e-3)
    straight = run(_cfg(init, train_jsonl, tmp_path / "a", **kw))
    first = tmp_path / "a" / "checkpoint-step-000001"
    assert load_file(straight / "model.safetensors")["talker.codec_head.weight"].dtype == torch.bfloat16
    assert (first / MASTER_WEIGHTS).is_file()
    assert QwenTTS.from_pretrained(straight).speakers == ["anna"]
    resumed = run(_cfg(init, train_jsonl, tmp_path / "b", resume_from=str(first), **kw))
    a, b = load_file(straight / MASTER_WEIGHTS), load_file(resumed / MASTER_WEIGHTS)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-7, msg=key)


def test_frozen_text_embedding_stays_put(tiny_base, train_jsonl):
    from finetuning.train import Trainer

    model = load_model(tiny_base)
    ds = SFTDataset(read_jsonl(train_jsonl), TextTokenizer.from_pretrained(tiny_base), model.config)
    text_before = model.talker.model.text_embedding.weight.detach().clone()
    head_before = model.talker.codec_head.weight.detach().clone()
    cfg = SFTConfig(train_text_embedding=False, grad_accum_steps=1, lr=1e-3)
    trainer = Trainer(cfg, model, torch.zeros(model.config.talker_config.hidden_size), torch.device("cpu"))
    trainer.train_step(collate([ds[0], ds[1]]))
    assert torch.equal(model.talker.model.text_embedding.weight, text_before)
    assert not torch.equal(model.talker.codec_head.weight, head_before)
    assert len(trainer.params) == sum(1 for _ in model.talker.parameters()) - 1


@pytest.mark.gpu
def test_cuda_training_uses_bf16_autocast(tiny_base, train_jsonl):
    from finetuning.train import Trainer

    device = torch.device("cuda")
    model = load_model(tiny_base, device=device)
    ds = SFTDataset(read_jsonl(train_jsonl), TextTokenizer.from_pretrained(tiny_base), model.config)
    xvec = torch.randn(model.config.talker_config.hidden_size)
    trainer = Trainer(SFTConfig(grad_accum_steps=1, lr=3e-3), model, xvec, device)
    losses = [trainer.train_step(collate([ds[0], ds[1]]))["loss"] for _ in range(5)]
    assert trainer.autocast == torch.bfloat16 and all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert all(p.dtype == torch.float32 and p.is_cuda for p in model.talker.parameters())
