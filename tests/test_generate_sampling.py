"""Sampling processors in the official order: repetition penalty, suppression, EOS ban, temperature, top-k, top-p."""

from __future__ import annotations

import math

import pytest
import torch

from qwen_tts.sampling import (
    SamplingParams,
    apply_repetition_penalty,
    choose,
    subtalker_scores,
    suppress_mask,
    talker_scores,
    warp,
)

VOCAB, EOS = 3072, 2150


def test_repetition_penalty_divides_positive_and_multiplies_negative_once():
    scores = torch.tensor([[2.0, -2.0, 1.0, 3.0]])
    out = apply_repetition_penalty(scores.clone(), torch.tensor([[0, 1, 0]]), 2.0)
    assert out.tolist() == [[1.0, -4.0, 1.0, 3.0]]  # token 0 seen twice is still penalised once


def test_suppression_window_spares_eos_and_codes():
    mask = suppress_mask(VOCAB, EOS)
    assert not mask[:2048].any()
    assert mask[2048:].sum() == 1023 and not mask[EOS]


@pytest.mark.parametrize("step,banned", [(0, True), (1, True), (2, False)])
def test_eos_is_banned_for_the_first_two_steps(step, banned):
    logits = torch.zeros(1, VOCAB)
    logits[0, EOS] = 50.0
    scores = talker_scores(logits, None, step, SamplingParams.greedy(), suppress_mask(VOCAB, EOS), EOS)
    assert math.isinf(scores[0, EOS]) == banned
    assert torch.isinf(scores[0, 2048:EOS]).all() and not torch.isinf(scores[0, :2048]).any()
    assert (int(scores.argmax()) == EOS) != banned


def test_talker_penalty_uses_history_before_warping():
    logits = torch.zeros(1, VOCAB)
    logits[0, 7], logits[0, 8] = 1.05, 1.0
    history = torch.tensor([[7]])
    params = SamplingParams(temperature=0.5, top_k=2, repetition_penalty=1.05)
    scores = talker_scores(logits, history, 5, params, suppress_mask(VOCAB, EOS), EOS)
    assert scores[0, 7].item() == pytest.approx(1.0 / 0.5)
    assert scores[0, 8].item() == pytest.approx(2.0)
    assert torch.isfinite(scores).sum() == 2  # top-k 2 after the penalty brought token 7 level with token 8


def test_top_k_keeps_ties_at_the_kth_value():
    scores = torch.tensor([[5.0, 4.0, 4.0, 1.0, 0.0]])
    out = warp(scores.clone(), 1.0, 2, 1.0)
    assert torch.isfinite(out).tolist() == [[True, True, True, False, False]]


def test_top_p_keeps_the_smallest_nucleus():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    out = warp(probs.log(), 1.0, 0, 0.8)
    assert torch.isfinite(out).tolist() == [[True, True, False, False]]
    out = warp(probs.log(), 1.0, 0, 0.81)
    assert torch.isfinite(out).tolist() == [[True, True, True, False]]
    out = warp(probs.log(), 1.0, 0, 1e-6)
    assert torch.isfinite(out).tolist() == [[True, False, False, False]]  # at least one token survives


def test_temperature_scales_logits():
    out = subtalker_scores(torch.tensor([[1.0, 2.0]]), SamplingParams(subtalker_temperature=0.5, subtalker_top_k=0))
    assert out.tolist() == [[2.0, 4.0]]


def test_greedy_flags_and_temperature_zero():
    assert SamplingParams.greedy().talker_greedy and SamplingParams.greedy().subtalker_greedy
    assert SamplingParams(temperature=0).talker_greedy and not SamplingParams(temperature=0).subtalker_greedy
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0)
    with pytest.raises(ValueError, match="temperature"):
        SamplingParams(temperature=-1)


def test_seeded_choice_reproduces_and_follows_the_distribution():
    scores = torch.tensor([[0.0, 1.0, 2.0, -math.inf]]).repeat(4000, 1)
    a = choose(scores, False, torch.Generator().manual_seed(3))
    b = choose(scores, False, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    freq = torch.bincount(a, minlength=4).float() / a.numel()
    expected = scores[0].softmax(-1)
    assert freq[3] == 0 and torch.allclose(freq, expected, atol=0.03)
    assert choose(scores[:1], True, None).item() == 2


def test_generation_config_names_are_mapped():
    params = SamplingParams.from_generation_config({"subtalker_dosample": False, "top_k": 7, "max_new_tokens": 9})
    assert params.subtalker_do_sample is False and params.top_k == 7
