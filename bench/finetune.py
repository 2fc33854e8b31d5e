"""Fine-tuning speed: samples/s and peak memory of one optimizer step, against a forward-only pass in the same run.

    .venv/bin/python bench/finetune.py [--size tiny|0.6b|1.7b] [--device cpu|cuda] [--batch-size 2] [--frames 100]
                                       [--text-tokens 40] [--steps 5] [--threads 1] [--precision auto|bf16|fp32]
                                       [--freeze-text-embedding]

Prints one JSON line. The model is a randomly initialised Base model of the given size built directly on the device
(weights do not change the cost), trained with ``finetuning.train.Trainer`` (AdamW, clipping, bf16 autocast on CUDA
for ``auto``) on synthetic batches of ``--batch-size`` samples, each ``--text-tokens`` text tokens and ``--frames``
codec frames (100 frames = 8 s of audio). Times are medians over ``--steps`` steps after one warm-up step.
``train_over_forward`` = optimizer-step time / forward-only loss time (the baseline, measured in the same run).
Peak memory: ``torch.cuda.max_memory_allocated`` on CUDA, the process's peak RSS on CPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import statistics
import time

import torch

log = logging.getLogger("bench.finetune")


def build_model(size: str, device: torch.device):
    from qwen_tts.model import Qwen3TTSModel
    from qwen_tts.tiny import tiny_config

    # the tiny text vocab puts the prompt's special text ids at 0..5 (as qwen_tts.tokenizer.write_tiny_tokenizer)
    special = {"im_start_token_id": 1, "im_end_token_id": 2, "tts_pad_token_id": 3, "tts_bos_token_id": 4,
               "tts_eos_token_id": 5} if size == "tiny" else None  # fmt: skip
    config = tiny_config("base", size, special)
    with torch.device(device):
        model = Qwen3TTSModel(config)
    return model.float()


def synthetic_batch(config, batch_size: int, text_tokens: int, frames: int, seed: int = 0) -> dict:
    from finetuning.data import build_example, collate

    gen = torch.Generator().manual_seed(seed)
    vocab = config.talker_config.text_vocab_size
    examples = []
    for _ in range(batch_size):
        text = torch.randint(10, min(vocab, 150000), (text_tokens,), generator=gen).tolist()
        codes = torch.randint(0, config.talker_config.codebook_size, (frames, 16), generator=gen)
        examples.append(build_example(config, [1, 2, 3], text, codes))
    return collate(examples)


def median_seconds(fn, steps: int, sync) -> float:
    fn()
    sync()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(args) -> dict:
    from finetuning.config import SFTConfig
    from finetuning.loss import compute_loss
    from finetuning.train import Trainer

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    model = build_model(args.size, device)
    cfg = SFTConfig(grad_accum_steps=1, precision=args.precision, batch_size=args.batch_size,
                    train_text_embedding=not args.freeze_text_embedding)  # fmt: skip
    hidden = model.config.talker_config.hidden_size
    trainer = Trainer(cfg, model, torch.randn(hidden), device)
    batch = synthetic_batch(model.config, args.batch_size, args.text_tokens, args.frames)
    on_device = {k: v.to(device) for k, v in batch.items()}

    def forward_only() -> None:
        with torch.no_grad(), trainer._autocast():
            compute_loss(model.talker, on_device, trainer.speaker_vector, cfg.sub_talker_loss_weight)

    forward_s = median_seconds(forward_only, args.steps, sync)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    step_s = median_seconds(lambda: trainer.train_step(batch), args.steps, sync)
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ru_maxrss is in KiB on Linux
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else rss_mib
    return {
        "bench": "finetune", "size": args.size, "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if cuda else None,
        "precision": "bf16-autocast" if trainer.autocast is not None else "fp32", "threads": args.threads,
        "params_m": round(sum(p.numel() for p in model.talker.parameters()) / 1e6, 2),
        "trained_params_m": round(sum(p.numel() for p in trainer.params) / 1e6, 2),
        "batch_size": args.batch_size, "frames": args.frames, "text_tokens": args.text_tokens,
        "seq_len": int(batch["labels"].shape[1]), "step_ms": round(step_s * 1000, 2),
        "forward_ms": round(forward_s * 1000, 2), "samples_per_s": round(args.batch_size / step_s, 3),
        "audio_s_per_s": round(args.batch_size * args.frames / 12.5 / step_s, 2),
        "train_over_forward": round(step_s / forward_s, 2),
        "peak_mem_mib": round(peak, 1), "peak_mem_kind": "cuda_allocated" if cuda else "process_rss",
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", default="tiny", choices=("tiny", "0.6b", "1.7b"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--text-tokens", type=int, default=40)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"))
    p.add_argument("--freeze-text-embedding", action="store_true", help="as --no-train-text-embedding in training")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    print(json.dumps(run(args)))  # the one JSON line this benchmark reports
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
