"""The tiny test tokenizer wearing real models' chat templates (tests/data/chat_templates.json).

Each variant adds the special tokens its template writes, takes the model's BOS / EOS, and adds
BOS on encode when the model's tokenizer does (Llama 3.1), so prompts render and tokenize as they
would for that model (with a tiny vocabulary).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

TEMPLATES = json.loads((Path(__file__).parent / "data" / "chat_templates.json").read_text(encoding="utf-8"))
NAMES = ("smollm2", "llama3.1", "qwen2.5")


def with_template(tokenizer, name: str):
    """A copy of `tokenizer` with the chat template (and tokens) of model `name`."""
    from tokenizers.processors import TemplateProcessing

    spec = TEMPLATES[name]
    tok = copy.deepcopy(tokenizer)
    missing = [t for t in spec["special_tokens"] if t not in tok.get_vocab()]
    if missing:
        tok.add_special_tokens({"additional_special_tokens": missing})
    if spec["bos_token"]:
        tok.bos_token = spec["bos_token"]
    tok.eos_token = spec["eos_token"]
    tok.chat_template = spec["chat_template"]
    if spec["adds_bos"]:
        bos = spec["bos_token"]
        tok.backend_tokenizer.post_processor = TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.convert_tokens_to_ids(bos))]
        )
    return tok
