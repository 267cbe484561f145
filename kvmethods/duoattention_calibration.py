"""A DuoAttention head pattern for any model, from a short synthetic multi-passkey retrieval set.

DuoAttention (mit-han-lab/duo-attention, duo_attn/train.py) learns one gate per KV head: the
model's attention becomes gate * full + (1 - gate) * streaming (sink + recent window), and the
gates are optimised (AdamW, 2,000 steps on 1K-32K-token multi-passkey haystacks, GPUs) so the
hidden states of the passkey answer match full attention's, with an L1 penalty pushing gates to 0.
A head whose gate stays high is one the answer needs full attention from.

This is a CPU-sized, gradient-free version of the same question: on the same kind of data
(filler text with `passkeys` passkeys at spread depths, then the question and the answer), it
measures per KV head how much attention the answer's rows give to keys a streaming head would not
see (outside the first `sink` and the last `recent` keys of each row), maxed over the head's query
group and the answer rows and averaged over the samples. That share is the head's score in [0, 1];
DuoAttention's `sparsity` then picks the retrieval heads from it as from a trained pattern. It
measures what streaming would lose for the answer directly, where the training finds the heads
whose removal changes the answer's hidden states; the two agree on heads that retrieve and heads
that only look locally, and can differ on heads whose distant attention matters little downstream.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from kvmethods.duoattention import PATTERN_FILE

FILLER = (
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
)


@dataclass(frozen=True)
class CalibrationSettings:
    samples: int = 4
    context_tokens: int = 1024
    passkeys: int = 4
    sink: int = 64
    recent: int = 256
    seed: int = 0


def passkey_sample(tokenizer, settings: CalibrationSettings, rng: random.Random) -> tuple[list[int], int]:
    """(token ids, index of the answer's first token): filler with passkeys at spread depths, the
    question, and the answer (every passkey, in order)."""
    keys = [str(rng.randint(10_000, 99_999)) for _ in range(settings.passkeys)]
    question = "\nWhat are the pass keys, in order? The pass keys are"
    answer = " " + ", ".join(keys) + "."
    filler_ids = tokenizer.encode(FILLER, add_special_tokens=False)
    fixed = sum(len(tokenizer.encode(f" The pass key is {k}. Remember it. {k} is the pass key. ",
                                     add_special_tokens=False)) for k in keys)
    budget = settings.context_tokens - fixed - len(tokenizer.encode(question + answer, add_special_tokens=False))
    haystack = (filler_ids * (budget // max(len(filler_ids), 1) + 1))[: max(budget, 0)]
    depths = sorted(rng.uniform(0.05, 0.6) for _ in keys)  # far enough back to leave the recent window
    ids: list[int] = list(tokenizer.encode("", add_special_tokens=True))
    last = 0
    for depth, key in zip(depths, keys):
        cut = int(depth * len(haystack))
        ids += haystack[last:cut] + tokenizer.encode(f" The pass key is {key}. Remember it. {key} is the pass key. ",
                                                     add_special_tokens=False)
        last = cut
    ids += haystack[last:] + tokenizer.encode(question, add_special_tokens=False)
    start = len(ids)
    return ids + tokenizer.encode(answer, add_special_tokens=False), start


def far_attention(probs: torch.Tensor, rows: torch.Tensor, sink: int, recent: int, num_kv_heads: int) -> torch.Tensor:
    """float [Hkv]: probs [Hq, L, L] (one layer's attention), rows: the answer's positions. The
    largest share of a row's attention outside its streaming window (keys >= sink and more than
    `recent` positions back), over each KV head's query group and the rows."""
    keys = torch.arange(probs.shape[-1])
    far = (keys[None, :] >= sink) & (keys[None, :] <= rows[:, None] - recent)  # [R, L]
    mass = (probs[:, rows].float() * far).sum(-1)  # [Hq, R]
    return mass.view(num_kv_heads, -1).amax(dim=1)


def calibrate(model_path: str, settings: CalibrationSettings, progress=None) -> torch.Tensor:
    """float [layers, Hkv] head scores of the model at `model_path` (a local HF checkpoint)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(settings.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32, attn_implementation="eager").eval()
    config = model.config
    hkv = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    if settings.context_tokens <= settings.sink + settings.recent + 32:
        raise ValueError(f"context_tokens ({settings.context_tokens}) must exceed sink + recent + 32 "
                         f"({settings.sink + settings.recent + 32}) so the passkeys lie outside the recent window")
    rng = random.Random(settings.seed)
    total = torch.zeros(config.num_hidden_layers, hkv)
    for i in range(settings.samples):
        ids, start = passkey_sample(tokenizer, settings, rng)
        rows = torch.arange(start - 1, len(ids) - 1)  # the rows that predict the answer's tokens
        with torch.no_grad():
            out = model(torch.tensor([ids]), output_attentions=True, use_cache=False)
        for layer, probs in enumerate(out.attentions):
            total[layer] += far_attention(probs[0], rows, settings.sink, settings.recent, hkv)
        if progress is not None:
            progress(i + 1, settings.samples)
    return (total / settings.samples).clamp(0, 1)


def write_pattern(out_dir: Path, scores: torch.Tensor, model_path: str, settings: CalibrationSettings) -> Path:
    """Writes full_attention_heads.tsv (duo-attention's layout) and config.json to `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(f"{float(x):.18e}" for x in row) for row in scores.tolist()]
    (out_dir / PATTERN_FILE).write_text("\n".join(lines) + "\n")
    config = {"model_name": model_path, "sink_size": settings.sink, "recent_size": settings.recent,
              "calibration": "far-attention share of multi-passkey answers (kvmethods/duoattention_calibration.py)",
              **asdict(settings)}
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return out_dir
