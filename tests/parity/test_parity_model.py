"""Model parity with the official qwen-tts 0.1.1 on our tiny random checkpoints (all three types, six requests).

One oracle process (module fixture) runs every official job: weight checks, save_pretrained, prompt capture with
prefill logits, greedy generation (repetition penalty 1.0 and the default 1.05) and seeded sampling with every
processed distribution recorded. The tests then compute the same quantities with our code:
- both sides load each other's weights (official: key-by-key vs the file; ours: strict loader on the official save);
- prompt embeddings, attention mask and trailing text match; prefill logits match (rtol 1e-4);
- greedy codes are identical for >= 40 frames;
- sampling: the official processed distributions (after penalty, suppression, EOS ban, temperature, top-k, top-p)
  equal ours step by step, both from the official raw logits and from our own teacher-forced logits.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.oracle.client import Oracle, OracleResults
from tests.parity.model_cases import (
    CASES,
    GREEDY_FRAMES,
    REF_TEXT,
    SAMPLED_FRAMES,
    TEXT,
    Case,
    our_inputs,
    sampling_params,
    shared_inputs,
    teacher_forced_distributions,
)

pytestmark = pytest.mark.parity

TYPES = ("custom_voice", "voice_design", "base")
# One request per checkpoint type also runs greedy on the normal (EOS-capable) checkpoint.
EOS_CASES = [next(c for c in CASES if c.model_type == t) for t in TYPES]
# bfloat16 on both sides (weights cast at load): streaming text, instruct, voice design and ICL layouts.
BF16_CASES = [c for c in CASES if c.name in ("custom_voice_dialect_instruct", "voice_design", "base_icl")]
EMBED_TOL = {"rtol": 1e-5, "atol": 1e-5}
LOGIT_TOL = {"rtol": 1e-4, "atol": 1e-4}
PROB_ATOL = 1e-5


@pytest.fixture(scope="module")
def checkpoints(tiny_custom_voice: Path, tiny_voice_design: Path, tiny_base: Path) -> dict[str, Path]:
    return {"custom_voice": tiny_custom_voice, "voice_design": tiny_voice_design, "base": tiny_base}


@pytest.fixture(scope="module")
def no_eos_checkpoints(tiny_factory) -> dict[str, Path]:
    """Same weights except a zero EOS row in codec_head, so greedy runs are guaranteed their full length."""
    return {t: tiny_factory(t, eos="never") for t in TYPES}


def _load(folder: Path) -> tuple:
    from qwen_tts.loading import load_model
    from qwen_tts.tokenizer import TextTokenizer

    return load_model(folder), TextTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def models(checkpoints: dict[str, Path]) -> dict[str, tuple]:
    """(model, tokenizer) per checkpoint type, loaded by our strict loader."""
    torch.set_num_threads(1)
    return {t: _load(d) for t, d in checkpoints.items()}


@pytest.fixture(scope="module")
def no_eos_models(no_eos_checkpoints: dict[str, Path]) -> dict[str, tuple]:
    return {t: _load(d) for t, d in no_eos_checkpoints.items()}


@pytest.fixture(scope="module")
def shared(models: dict[str, tuple]) -> dict[str, torch.Tensor]:
    return shared_inputs(models["base"][0].config.talker_config.hidden_size)


def _official_jobs(case: Case, ckpt: str, no_eos_ckpt: str) -> list[dict]:
    args = case.official_args()
    greedy = {**args, "do_sample": False, "subtalker_dosample": False, "max_new_tokens": GREEDY_FRAMES + 1}
    sampled = {**args, **case.sampling, "record": True, "seed": 11, "max_new_tokens": SAMPLED_FRAMES + 1}
    eos = [{"id": f"{case.name}.greedy_eos", "op": "generate", "checkpoint": ckpt, "args": greedy}]
    return eos * (case in EOS_CASES) + [
        {"id": f"{case.name}.prompt", "op": "prompt", "checkpoint": ckpt, "args": args},
        {"id": f"{case.name}.greedy1.0", "op": "generate", "checkpoint": no_eos_ckpt,
         "args": {**greedy, "repetition_penalty": 1.0}},
        {"id": f"{case.name}.greedy1.05", "op": "generate", "checkpoint": no_eos_ckpt, "args": greedy},
        {"id": f"{case.name}.sampled", "op": "generate", "checkpoint": ckpt, "args": sampled},
    ]  # fmt: skip


@pytest.fixture(scope="module")
def our_saves(models, checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each model written back by our ``save_model`` (config.json + model.safetensors), other files copied."""
    import shutil

    from qwen_tts.loading import save_model

    root = tmp_path_factory.mktemp("our_saved")
    for t, (model, _tok) in models.items():
        src = checkpoints[t]
        # Skip only the top-level files save_model writes (speech_tokenizer/ has files of the same names).
        shutil.copytree(src, root / t, ignore=lambda d, _names, src=src: ["config.json", "model.safetensors"]
                        if Path(d) == src else [])  # fmt: skip
        save_model(model, root / t)
    return {t: root / t for t in models}


@pytest.fixture(scope="module")
def official(
    oracle: Oracle,
    checkpoints: dict[str, Path],
    no_eos_checkpoints: dict[str, Path],
    our_saves: dict[str, Path],
    shared: dict[str, torch.Tensor],
    tmp_path_factory: pytest.TempPathFactory,
) -> OracleResults:
    saved = tmp_path_factory.mktemp("official_saved")
    jobs = []
    for t, ckpt in checkpoints.items():
        jobs.append({"id": f"{t}.weights", "op": "weights_check", "checkpoint": ckpt})
        jobs.append({"id": f"{t}.our_save", "op": "weights_check", "checkpoint": our_saves[t]})
        jobs.append({"id": f"{t}.save", "op": "save", "checkpoint": ckpt, "args": {"out_dir": str(saved / t)}})
    for case in CASES:
        jobs += _official_jobs(case, str(checkpoints[case.model_type]), str(no_eos_checkpoints[case.model_type]))
    base = str(checkpoints["base"])
    jobs.append({"id": "xvector24", "op": "xvector", "checkpoint": base, "args": {"audio": "clip24", "sr": 24_000}})
    jobs.append({"id": "xvector16", "op": "xvector", "checkpoint": base, "args": {"audio": "clip16", "sr": 16_000}})
    for case in BF16_CASES:
        ckpt, args = str(no_eos_checkpoints[case.model_type]), case.official_args()
        greedy = {**args, "do_sample": False, "subtalker_dosample": False, "repetition_penalty": 1.0,
                  "max_new_tokens": GREEDY_FRAMES + 1}  # fmt: skip
        jobs.append({"id": f"{case.name}.bf16_prompt", "op": "prompt", "checkpoint": ckpt, "dtype": "bfloat16",
                     "args": args})  # fmt: skip
        jobs.append({"id": f"{case.name}.bf16_greedy", "op": "generate", "checkpoint": ckpt, "dtype": "bfloat16",
                     "args": greedy})  # fmt: skip
    return oracle.run(jobs, inputs=shared)


# --- loading both ways ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["weights", "our_save"], ids=["tiny_writer", "save_model"])
@pytest.mark.parametrize("model_type", TYPES)
def test_official_loads_our_checkpoint_exactly(official: OracleResults, models, model_type: str, source: str) -> None:
    """Both our tiny writer's files and what ``qwen_tts.loading.save_model`` writes load into the official model
    with every key present, none extra and every value equal."""
    from qwen_tts.prompt import supported_languages

    meta = official.meta(f"{model_type}.{source}")
    for part in ("model", "speech_tokenizer"):
        assert meta[part] == {"missing": [], "unexpected": [], "mismatched": []}, f"{part}: {meta[part]}"
    config = models[model_type][0].config
    assert meta["tts_model_type"] == config.tts_model_type
    assert meta["speakers"] == sorted(config.talker_config.spk_id)
    assert meta["languages"] == sorted(supported_languages(config))


@pytest.mark.parametrize("model_type", TYPES)
def test_we_load_the_official_save_strictly(official: OracleResults, models, model_type: str) -> None:
    from qwen_tts.loading import load_model

    saved = Path(official.meta(f"{model_type}.save")["out_dir"])
    assert "model.safetensors" in official.meta(f"{model_type}.save")["written_by_save_pretrained"]
    reloaded = load_model(saved)
    ours = models[model_type][0].state_dict()
    theirs = reloaded.state_dict()
    assert theirs.keys() == ours.keys()
    assert all(torch.equal(theirs[k], ours[k]) for k in ours), "weights changed through the official save"
    assert reloaded.config.tts_model_type == model_type


# --- prompt and prefill -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inputs(models, shared) -> dict[str, object]:
    return {c.name: our_inputs(*models[c.model_type], c, shared) for c in CASES}


@pytest.fixture(scope="module")
def no_eos_inputs(no_eos_models, shared) -> dict[str, object]:
    return {c.name: our_inputs(*no_eos_models[c.model_type], c, shared) for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_prompt_embeddings_match(official: OracleResults, inputs, case: Case) -> None:
    theirs = official[f"{case.name}.prompt"]
    ours = inputs[case.name]
    torch.testing.assert_close(ours.embeds, theirs["inputs_embeds"], **EMBED_TOL)
    assert torch.equal(ours.mask.long(), theirs["attention_mask"].long())
    # Official trailing text is (1, N, H); once it runs out both sides add tts_pad, so compare the common length and
    # require our extra rows (if any) to be the pad embedding.
    their_trailing, our_trailing = theirs["trailing_text_hidden"], ours.trailing
    n = their_trailing.shape[1]
    torch.testing.assert_close(our_trailing[:, :n], their_trailing, **EMBED_TOL)
    torch.testing.assert_close(our_trailing[:, n:], ours.pad_embed.expand_as(our_trailing[:, n:]), **EMBED_TOL)
    torch.testing.assert_close(ours.pad_embed.reshape(-1), theirs["tts_pad_embed"].reshape(-1), **EMBED_TOL)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_prefill_logits_match(official: OracleResults, models, inputs, case: Case) -> None:
    from qwen_tts.generate import prefill_logits

    model = models[case.model_type][0]
    logits, _hidden = prefill_logits(model, inputs[case.name])
    theirs = official[f"{case.name}.prompt"]["prefill_logits"][:, -1]
    assert float(theirs.std()) > 0.1, "degenerate logits would make this comparison meaningless"
    torch.testing.assert_close(logits, theirs, **LOGIT_TOL)


# --- greedy generation ------------------------------------------------------------------------------------------


def _our_greedy(model, inputs, case: Case, penalty: float, eager: bool = False) -> torch.Tensor:
    """Greedy frames on the default stepper (what generation uses) or on the eager reference ``Stepper``."""
    from qwen_tts.generate import Stepper, default_cache_len, generate_frames

    cache_len = default_cache_len(inputs, GREEDY_FRAMES, model.config.talker_config.max_position_embeddings)
    stepper = Stepper(model, inputs, cache_len) if eager else None
    frames = generate_frames(model, inputs, sampling_params(case, penalty), GREEDY_FRAMES, stepper=stepper)
    return torch.cat([f.codes for f in frames])


def _assert_same_codes(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    assert ours.shape == theirs.shape, f"{ours.shape[0]} frames vs official {theirs.shape[0]}"
    bad = (ours != theirs).any(dim=1).nonzero()
    assert bad.numel() == 0, (
        f"first differing frame {int(bad[0])}: {ours[bad[0]].tolist()} vs {theirs[bad[0]].tolist()}"
    )


@pytest.mark.parametrize(
    ("penalty", "eager"), [(1.0, False), (1.05, False), (1.0, True)], ids=["rep1.0", "rep1.05", "rep1.0-eager"]
)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_greedy_codes_identical(
    official: OracleResults, no_eos_models, no_eos_inputs, case: Case, penalty: float, eager: bool
) -> None:
    theirs = official[f"{case.name}.greedy{penalty}"]["codes"]
    assert theirs.shape[0] == GREEDY_FRAMES
    model = no_eos_models[case.model_type][0]
    _assert_same_codes(_our_greedy(model, no_eos_inputs[case.name], case, penalty, eager), theirs)


@pytest.mark.parametrize("case", EOS_CASES, ids=lambda c: c.name)
def test_greedy_stops_at_the_same_eos(official: OracleResults, models, inputs, case: Case) -> None:
    """Normal checkpoints (EOS possible), default penalty: same codes and the same stopping frame."""
    theirs = official[f"{case.name}.greedy_eos"]["codes"]
    _assert_same_codes(_our_greedy(models[case.model_type][0], inputs[case.name], case, 1.05), theirs)


def test_some_greedy_run_ends_with_eos(official: OracleResults) -> None:
    """At least one request stops on EOS before the frame limit, so the EOS comparison above is not vacuous."""
    lengths = {c.name: official[f"{c.name}.greedy_eos"]["codes"].shape[0] for c in EOS_CASES}
    assert min(lengths.values()) < GREEDY_FRAMES, lengths


def test_repetition_penalty_changes_greedy_codes(official: OracleResults) -> None:
    """The two greedy variants must differ somewhere, or the 1.05 comparison would not test the penalty."""
    differs = [not torch.equal(official[f"{c.name}.greedy1.0"]["codes"], official[f"{c.name}.greedy1.05"]["codes"])
               for c in CASES]  # fmt: skip
    assert any(differs)


# --- sampling distributions -------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_processors_match_on_official_logits(official: OracleResults, models, case: Case) -> None:
    """Our processors applied to the official raw logits and history give the official distributions."""
    from qwen_tts.sampling import subtalker_scores, suppress_mask, talker_scores

    rec = official[f"{case.name}.sampled"]
    tc = models[case.model_type][0].config.talker_config
    params = sampling_params(case)
    suppressed = suppress_mask(tc.vocab_size, tc.codec_eos_token_id)
    tokens = rec["talker_tokens"]
    assert rec["talker_probs"].shape[0] == rec["codes"].shape[0] + 1  # the last draw is EOS or never expanded
    for k in range(tokens.shape[0]):
        scores = talker_scores(rec["talker_logits"][k : k + 1], tokens[None, :k], k, params, suppressed,
                               tc.codec_eos_token_id)  # fmt: skip
        torch.testing.assert_close(scores.softmax(-1), rec["talker_probs"][k : k + 1], rtol=0, atol=PROB_ATOL)
    ours = subtalker_scores(rec["predictor_logits"], params).softmax(-1)
    assert ours.shape == (rec["codes"].shape[0] * 15, 2048)
    torch.testing.assert_close(ours, rec["predictor_probs"], rtol=0, atol=PROB_ATOL)


@pytest.mark.parametrize("eager", [False, True], ids=["default_path", "eager_reference"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_distributions_match_given_official_history(
    official: OracleResults, models, inputs, case: Case, eager: bool
) -> None:
    """Our model + processors, teacher-forced on the official sampled codes, give the official distributions."""
    rec = official[f"{case.name}.sampled"]
    assert 0 < rec["codes"].shape[0] <= SAMPLED_FRAMES
    talker, predictor = teacher_forced_distributions(models[case.model_type][0], inputs[case.name], rec["codes"],
                                                     sampling_params(case), eager=eager)  # fmt: skip
    torch.testing.assert_close(talker, rec["talker_probs"], rtol=0, atol=PROB_ATOL)
    torch.testing.assert_close(predictor, rec["predictor_probs"], rtol=0, atol=PROB_ATOL)
    # The support (what top-k / top-p keep) must be identical, not just close.
    assert torch.equal(talker > 0, rec["talker_probs"] > 0)
    assert torch.equal(predictor > 0, rec["predictor_probs"] > 0)


# --- x-vector and the public facade ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def facades(no_eos_checkpoints: dict[str, Path]) -> dict[str, object]:
    from qwen_tts import QwenTTS

    return {t: QwenTTS.from_pretrained(d) for t, d in no_eos_checkpoints.items()}


@pytest.mark.parametrize("sr", [24_000, 16_000])
def test_xvector_matches_official(official: OracleResults, facades, shared, sr: int) -> None:
    """Same speaker-encoder weights in both checkpoint variants; 16 kHz goes through each side's resampler."""
    theirs = official[f"xvector{sr // 1000}"]["xvector"]
    ours = facades["base"].speaker_embedding(shared[f"clip{sr // 1000}"].numpy(), sr)
    assert ours.shape == theirs.shape
    assert float(torch.nn.functional.cosine_similarity(ours.float(), theirs, dim=0)) >= 0.9999


@pytest.mark.parametrize("case", [c for c in CASES if c.official_default_layout], ids=lambda c: c.name)
def test_facade_synthesize_matches_official(official: OracleResults, facades, shared, case: Case) -> None:
    """``QwenTTS`` with its default layout for the checkpoint type: same codes and same waveform as the official
    ``generate_*`` (for ICL the official decodes reference + new codes and cuts the reference share)."""
    from qwen_tts import SynthesisRequest

    tts = facades[case.model_type]
    req = SynthesisRequest(
        TEXT, language=case.language, speaker=case.speaker, instruct=case.instruct,
        speaker_vector=shared["xvector"] if case.xvector else None,
        ref_codes=shared["ref_codes"] if case.icl else None, ref_text=REF_TEXT if case.icl else None,
        sampling=sampling_params(case, 1.0), max_frames=GREEDY_FRAMES,
    )  # fmt: skip
    theirs = official[f"{case.name}.greedy1.0"]
    _assert_same_codes(torch.stack(list(tts.generate_codes(req))), theirs["codes"])
    wav = torch.from_numpy(tts.synthesize(req))
    assert wav.shape == (GREEDY_FRAMES * tts.samples_per_frame,)
    their_wav = theirs["wav"]
    # The official ICL cut is int(ref/total * samples), which float rounding can put one sample early.
    assert their_wav.shape[0] - wav.shape[0] in (0, 1)
    tail = their_wav[their_wav.shape[0] - wav.shape[0] :]
    assert float((wav - tail).abs().max()) <= 1e-4


# --- bfloat16 ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bf16(no_eos_checkpoints: dict[str, Path], shared) -> dict[str, tuple]:
    """(model, inputs) per BF16 case: our strict loader with dtype=bfloat16, prompts built in bf16."""
    from qwen_tts.loading import load_model
    from qwen_tts.tokenizer import TextTokenizer

    out = {}
    for case in BF16_CASES:
        folder = no_eos_checkpoints[case.model_type]
        model = load_model(folder, dtype=torch.bfloat16)
        out[case.name] = (model, our_inputs(model, TextTokenizer.from_pretrained(folder), case, shared))
    return out


@pytest.mark.parametrize("case", BF16_CASES, ids=lambda c: c.name)
def test_bf16_prompt_and_prefill_logits_match(official: OracleResults, bf16, case: Case) -> None:
    """Same rounding order as the official bf16 model: embeddings and logits agree to bf16 resolution."""
    from qwen_tts.generate import prefill_logits

    model, inputs = bf16[case.name]
    theirs = official[f"{case.name}.bf16_prompt"]
    assert inputs.embeds.dtype == theirs["inputs_embeds"].dtype == torch.bfloat16
    torch.testing.assert_close(inputs.embeds, theirs["inputs_embeds"], rtol=1.6e-2, atol=1e-2)
    logits, _ = prefill_logits(model, inputs)
    torch.testing.assert_close(logits, theirs["prefill_logits"][:, -1], rtol=1.6e-2, atol=2e-2)


@pytest.mark.parametrize("case", BF16_CASES, ids=lambda c: c.name)
def test_bf16_greedy_codes_identical(official: OracleResults, bf16, case: Case) -> None:
    model, inputs = bf16[case.name]
    theirs = official[f"{case.name}.bf16_greedy"]["codes"]
    assert theirs.shape[0] == GREEDY_FRAMES
    _assert_same_codes(_our_greedy(model, inputs, case, 1.0), theirs)
