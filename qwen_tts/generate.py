"""Frame generator: talker + code predictor with static KV caches, yielding one 16-code frame per step.

Per step (as the official loop): the talker hidden that produced codebook 0 (``past_hidden``) and ``C(c0)`` start the
code predictor, whose cache restarts every frame; it samples codebooks 1..15. The frame's 16 embeddings are summed,
the next trailing text embedding (or ``tts_pad``) is added, and one talker position gives the logits of the next c0.
Generation stops on EOS (per row; the frame with EOS is not emitted) or after ``max_frames`` frames.

The talker cache holds the left-padded prompt at slots 0..L-1 and step k at slot L+k; RoPE positions count real
tokens only (cumsum of the mask - 1), so a padded row behaves exactly as if it ran alone.
``Stepper`` (``qwen_tts.stepper``) is the eager reference; ``qwen_tts.fast`` has a fused version of the same calls.
The batching engine (``qwen_tts.batching``) serves many requests through its own batched step instead.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from qwen_tts.fast import FastStepper
from qwen_tts.model import Qwen3TTSModel
from qwen_tts.prompt import TalkerInputs
from qwen_tts.sampling import SamplingParams, choose, suppress_mask, talker_scores
from qwen_tts.stepper import Stepper

__all__ = ["Frame", "Stepper", "default_cache_len", "generate_frames", "make_stepper", "prefill_logits",
           "reference_greedy_codes"]  # fmt: skip

log = logging.getLogger(__name__)


@dataclass
class Frame:
    """One generation step: codes (B, 16) int64 (rows already finished are -1), active (B,) bool, hidden (B, H)."""

    codes: torch.Tensor
    active: torch.Tensor
    hidden: torch.Tensor


def make_stepper(
    model: Qwen3TTSModel,
    inputs: TalkerInputs,
    cache_len: int,
    params: SamplingParams | None = None,
    eager: bool = False,
) -> Stepper:
    """The fused fast path (``qwen_tts.fast``), or the eager reference ``Stepper`` when ``eager`` is asked for.

    ``params`` is accepted for callers of the older signature; neither path depends on it."""
    if eager:
        return Stepper(model, inputs, cache_len)
    return FastStepper(model, inputs, cache_len)


def default_cache_len(inputs: TalkerInputs, max_frames: int, limit: int) -> int:
    """Slots for the prompt plus every frame, at most ``limit`` (the model's max positions or a user cap)."""
    return min(inputs.mask.shape[1] + max_frames + 1, limit)


@torch.no_grad()
def generate_frames(
    model: Qwen3TTSModel,
    inputs: TalkerInputs,
    params: SamplingParams,
    max_frames: int,
    generator: torch.Generator | None = None,
    cache_len: int | None = None,
    stepper: Stepper | None = None,
    eager: bool = False,
    cpu_threads: int | None = None,
) -> Iterator[Frame]:
    """Yield frames as they are produced until every row hit EOS or ``max_frames`` frames were yielded.

    ``eager`` picks the reference ``Stepper`` over the fused path. ``cpu_threads`` (``RuntimeOptions.cpu_threads``)
    caps torch's intra-op threads while a CPU model computes a step, restoring the caller's setting before each
    yield. Small models run fastest with 1:
    every parallel region wakes the other threads, which costs far more than the math of one step, and a lot more
    again on a shared machine.
    """
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    tc = model.config.talker_config
    limit = tc.max_position_embeddings
    if cache_len is None:
        cache_len = default_cache_len(inputs, max_frames, limit)
    step_impl = stepper or make_stepper(model, inputs, cache_len, params, eager)
    threads = cpu_threads
    try:
        run = _run(model, inputs, params, max_frames, generator, step_impl)
        if threads is None or inputs.embeds.is_cuda:
            yield from run
        else:
            yield from _capped(run, threads)
    finally:
        step_impl.close()


def _capped(run: Iterator[Frame], threads: int) -> Iterator[Frame]:
    """Advance ``run`` with torch limited to ``threads`` intra-op threads; the consumer runs with its own setting."""
    while True:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            frame = next(run)
        except StopIteration:
            return
        finally:
            torch.set_num_threads(before)
        yield frame


def _run(model, inputs: TalkerInputs, params: SamplingParams, max_frames: int, generator, step_impl: Stepper):
    tc = model.config.talker_config
    eos = tc.codec_eos_token_id
    suppressed = suppress_mask(tc.vocab_size, eos, inputs.embeds.device)
    batch = inputs.mask.shape[0]
    history = torch.empty(batch, 0, dtype=torch.long, device=inputs.embeds.device)
    finished = torch.zeros(batch, dtype=torch.bool, device=inputs.embeds.device)
    logits, hidden = step_impl.prefill()
    frames_room = step_impl.cache_len - step_impl.prompt_len
    for step in range(max_frames):
        c0 = choose(talker_scores(logits, history, step, params, suppressed, eos), params.talker_greedy, generator)
        finished = finished | (c0 == eos)
        if bool(finished.all()):
            return
        codes = step_impl.predict(hidden, c0, params, generator)
        yield Frame(codes=codes.masked_fill(finished[:, None], -1), active=~finished, hidden=hidden)
        if step + 1 == max_frames:
            return
        if step + 1 >= frames_room:
            log.warning("stopping after %d frames: the KV cache (%d slots) is full", step + 1, step_impl.cache_len)
            return
        history = torch.cat((history, c0[:, None]), dim=1)
        text = inputs.trailing[:, step] if step < inputs.trailing.shape[1] else inputs.pad_embed.expand(batch, -1)
        logits, hidden = step_impl.talker_step(codes, text, step)


@torch.no_grad()
def prefill_logits(model: Qwen3TTSModel, inputs: TalkerInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (B, vocab), hidden (B, H)) after the prompt: the first codebook-0 distribution, for parity checks."""
    return Stepper(model, inputs, inputs.mask.shape[1] + 1).prefill()


@torch.no_grad()
def reference_greedy_codes(model: Qwen3TTSModel, inputs: TalkerInputs, frames: int) -> torch.Tensor:
    """No-cache greedy reference for one unpadded prompt: every step recomputes the whole sequence. (frames, 16).

    Slow on purpose (quadratic); it checks the cached generator. Stops early at EOS like the generator.
    """
    talker, tc = model.talker, model.config.talker_config
    if not bool(inputs.mask.all()) or inputs.mask.shape[0] != 1:
        raise ValueError("reference_greedy_codes takes one unpadded prompt")
    params = SamplingParams.greedy()
    suppressed = suppress_mask(tc.vocab_size, tc.codec_eos_token_id, inputs.embeds.device)
    seq, history, out = inputs.embeds, torch.empty(1, 0, dtype=torch.long), []
    for step in range(frames):
        h = talker.model.run_layers(seq, None)
        logits = talker.codec_head(h[:, -1])
        c0 = talker_scores(logits, history, step, params, suppressed, tc.codec_eos_token_id).argmax(-1)
        if int(c0) == tc.codec_eos_token_id:
            break
        codes = [c0]
        for g in range(1, tc.num_code_groups):
            partial = torch.zeros(1, tc.num_code_groups, dtype=torch.long)
            partial[0, :g] = torch.cat(codes)
            cp_logits = talker.code_predictor.full_logits(h[:, -1], partial, talker.codec_embed(c0))
            codes.append(cp_logits[:, g - 1].argmax(-1))
        frame = torch.cat(codes)[None]
        out.append(frame[0])
        history = torch.cat((history, c0[:, None]), dim=1)
        text = inputs.trailing[:, step] if step < inputs.trailing.shape[1] else inputs.pad_embed[None]
        seq = torch.cat((seq, (talker.frame_embed(frame) + text)[:, None]), dim=1)
    return torch.stack(out) if out else torch.empty(0, tc.num_code_groups, dtype=torch.long)
