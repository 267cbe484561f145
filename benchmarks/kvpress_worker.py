"""kvpress side of `benchmarks.kvpress_peer`: runs in kvpress's own virtual environment.

    <kvpress venv>/bin/python benchmarks/kvpress_worker.py JOB.json RESULT.json

Imports only the standard library, torch, transformers and kvpress (not this project). The job
holds the model path, dtype, the presses with their settings, and the sessions (context = the task's
instruction + context, questions = each question, as plain text: the project's multi-request pieces
without their chat template). kvpress's pipeline wraps them in the model's chat template, prefills the context once with
the press compressing the KV cache, then answers each question greedily over the compressed cache.
The result holds, per press and session, the answers, the wall time of the pipeline call (compress
+ all answers; the model is loaded once, before, and warmed up), the texts and token counts it
built.
"""

from __future__ import annotations

import json
import os
import sys
import time


def press_for(spec: dict, context_tokens: int):
    from kvpress import SnapKVPress, StreamingLLMPress

    name = spec["name"]
    if name == "full":
        return None
    # kvpress keeps int(k_len * (1 - ratio)) keys: pick the ratio that keeps exactly `budget`.
    ratio = max(0.0, 1.0 - (spec["budget"] + 0.5) / context_tokens)
    if name == "snapkv":
        return SnapKVPress(compression_ratio=ratio, window_size=spec["window"], kernel_size=spec["kernel_size"])
    if name == "streamingllm":
        return StreamingLLMPress(compression_ratio=ratio, n_sink=spec["sink"])
    raise ValueError(f"unknown press {name!r}")


def main() -> None:
    job_path, out_path = sys.argv[1], sys.argv[2]
    job = json.loads(open(job_path, encoding="utf-8").read())
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch
    import transformers

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    import kvpress
    from kvpress.utils import compute_n_kept
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    dtype = getattr(torch, job["dtype"])
    model = AutoModelForCausalLM.from_pretrained(job["model_path"], dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(job["model_path"])
    pipe = pipeline("kv-press-text-generation", model=model, tokenizer=tokenizer, device="cpu")
    pipe("Hello " * 64, questions=["Hi?"], press=None, max_new_tokens=4)  # warm-up

    results = []
    for spec in job["presses"]:
        for session in job["sessions"]:
            tensors = pipe.preprocess(session["context"], session["questions"], "", int(1e10))
            context_tokens = int(tensors["context_ids"].shape[1])
            press = press_for(spec, context_tokens)
            started = time.monotonic()
            out = pipe(session["context"], questions=session["questions"], press=press,
                       max_new_tokens=session["max_new_tokens"])
            wall = time.monotonic() - started
            # The texts the pipeline built (its own preprocess), and whether tokenizing context and
            # question apart gives the same ids as tokenizing the whole prompt.
            separator = "#" * (len(session["context"]) + 10)
            rendered = tokenizer.apply_chat_template([{"role": "user", "content": session["context"] + separator}],
                                                     add_generation_prompt=True, tokenize=False)
            context_text, suffix = rendered.split(separator)
            prompts, split_equal, prompt_tokens = [], [], []
            for q_ids, question in zip(tensors["questions_ids"], session["questions"]):
                full = context_text + question + suffix
                joint = tokenizer.encode(full, add_special_tokens=False)
                split = tensors["context_ids"][0].tolist() + q_ids[0].tolist()
                prompts.append(full)
                split_equal.append(joint == split)
                prompt_tokens.append(len(split))
            results.append({
                "press": spec["name"], "session": session["id"], "wall_s": wall, "answers": out["answers"],
                "context_tokens": context_tokens,
                "kept_tokens": None if press is None else compute_n_kept(context_tokens, press.compression_ratio),
                "press_repr": repr(press), "prompts": prompts, "prompt_tokens": prompt_tokens,
                "split_tokenization_equal": split_equal,
            })
            print(f"  kvpress {spec['name']:<12} {session['id']}: {wall:.1f} s", flush=True)
    from importlib import metadata

    info = {"kvpress": metadata.version("kvpress"), "torch": torch.__version__,
            "transformers": transformers.__version__, "attn_implementation": model.config._attn_implementation,
            "dtype": str(model.dtype), "threads": torch.get_num_threads(), "module": kvpress.__file__}
    with open(out_path, "w", encoding="utf-8") as fh:
        json.dump({"versions": info, "results": results}, fh, indent=2)


if __name__ == "__main__":
    main()
