"""Runs in ``.venv-oracle`` (``python -P``): the fine-tuning loss computed with the OFFICIAL package's modules.

    .venv-oracle/bin/python -P tests/finetune_oracle_job.py CHECKPOINT INPUTS.safetensors OUT.safetensors

INPUTS holds one collated batch of ``finetuning.data.collate`` (text_ids, text_mask, codec_ids, codec_mask,
speaker_mask, frame_codes, frame_mask, labels, attention_mask) and ``xvec``. The official ``sft_12hz.py`` recipe is
replayed on the official ``Qwen3TTSForConditionalGeneration`` talker (its embeddings, ``text_projection``, talker
forward + transformers loss, ``forward_sub_talker_finetune``), two ways:

* ``fixed``: with the four alignment fixes (text_projection + re-mask, PR #188; full sequences so transformers'
  ``ForCausalLMLoss`` shifts once, PR #278; hidden at p - 1 for the sub-talker, issue #337/#371; head j scored
  against codebook j, computed from the official sub-talker logits);
* ``shipped``: as released (sliced inputs/labels + internal shift, hidden at p, shifted sub-talker labels) but with
  the text_projection fix, without which the tiny model (text hidden != talker hidden) cannot run at all.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent / "oracle"))  # shim.py; the repo root stays off sys.path

SUB_TALKER_WEIGHT = 0.3


def official_embeds(talker, b):
    """The official training embeddings (speaker at the masked codec position), with text_projection applied."""
    text = talker.text_projection(talker.model.text_embedding(b["text_ids"])) * b["text_mask"][..., None]
    codec = talker.model.codec_embedding(b["codec_ids"]) * b["codec_mask"][..., None]
    speaker_pos = int(b["speaker_mask"][0].nonzero()[0, 0])
    codec[:, speaker_pos, :] = b["xvec"]
    embeds = text + codec
    frame_mask = b["frame_mask"][..., None]
    for i in range(1, 16):
        embeds = embeds + talker.code_predictor.get_input_embeddings()[i - 1](b["frame_codes"][:, :, i]) * frame_mask
    return embeds


def main() -> int:
    import shim
    import torch
    import torch.nn.functional as F
    from safetensors.torch import load_file, save_file

    shim.import_official()
    from qwen_tts import Qwen3TTSModel

    checkpoint, inputs, out = sys.argv[1:4]
    talker = Qwen3TTSModel.from_pretrained(checkpoint, dtype=torch.float32, device_map="cpu").model.talker
    b = load_file(inputs)
    for key in ("text_mask", "codec_mask", "speaker_mask", "frame_mask", "attention_mask"):
        b[key] = b[key].bool()
    results = {}
    with torch.no_grad():
        embeds = official_embeds(talker, b)
        attn = b["attention_mask"].long()
        codes = b["frame_codes"][b["frame_mask"]]
        full = talker(inputs_embeds=embeds, attention_mask=attn, labels=b["labels"], output_hidden_states=True)
        past = full.hidden_states[0][-1][:, :-1][b["frame_mask"][:, 1:]]
        logits, _ = talker.forward_sub_talker_finetune(codes, past)
        sub = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), codes[:, 1:].reshape(-1))
        results.update(fixed_talker=full.loss, fixed_sub=sub, fixed=full.loss + SUB_TALKER_WEIGHT * sub)
        sliced = talker(inputs_embeds=embeds[:, :-1], attention_mask=attn[:, :-1], labels=b["labels"][:, 1:],
                        output_hidden_states=True)  # fmt: skip
        leaked = sliced.hidden_states[0][-1][b["frame_mask"][:, :-1]]
        _, shipped_sub = talker.forward_sub_talker_finetune(codes, leaked)
        results.update(shipped=sliced.loss + SUB_TALKER_WEIGHT * shipped_sub)
    save_file({k: v.detach().reshape(1).float().contiguous() for k, v in results.items()}, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
