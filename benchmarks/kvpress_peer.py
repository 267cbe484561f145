"""NVIDIA's kvpress as a peer: SnapKV and StreamingLLM on the same model, contexts and questions,
kvpress's pipeline against this project's servers; wall time and answer agreement.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.kvpress_peer [--setup] [--samples 3 --budget 512]

kvpress (PyPI `kvpress`) needs transformers < 5.3, and this project's environment pins 5.19, so it
runs in its own virtual environment (default `.cache/kvpress-venv`; `--setup` creates it: CPU torch
2.13.0 first, then kvpress with torch pinned by a constraint, so no CUDA torch is pulled) as a
subprocess: `benchmarks/kvpress_worker.py`. If kvpress cannot run, this prints one line saying why
and exits 0.

Same work on both sides: Retr.KV sessions from the offline generator (same seed), each a context and
its questions, with the kv task's answer budget (150 new tokens), greedy, on the embedded
SmolLM2-135M-Instruct checkpoint (the converted bf16 HF checkpoint the server serves), computed in
float32 on both sides by default (`--dtype`: the server's `--dtype`, kvpress' torch dtype). In
bf16 the two runtimes' different kernels round differently, and greedy UUID answers of a 135M model
flip on such differences even without compression. kvpress's pipeline compresses the context once (query-agnostic: the press sees only
the context) and answers each question over the compressed cache; the project's equivalent is the
multi-request mode (the context is committed alone and compressed, then each question is a request
over it), run through `bench.runner.run_session` on one managed server per method. Settings are the
same on both sides: SnapKV keeps `--budget` keys per KV head with a `--window`-query observation
window, 1-D average pooling of `--kernel-size`; StreamingLLM keeps `--sink` first keys and the rest
of the budget as the most recent. kvpress takes a compression ratio, set per context to keep exactly
`budget` keys. `full` (no compression on either side) is the control: disagreements there come from
the two runtimes' numerics, not from the presses.

Answers agree when they are equal after strip(). Target: agreement >= 90% for SnapKV and
StreamingLLM under the same settings.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

from benchmarks.measure import fmt_pct, fmt_ratio, load_note, load_text, ratio, table, target_line, write_json
from benchmarks.options import EMBEDDED, REPO, choice_list, default_out, resolve_method_list
from benchmarks.recording import Recorder
from benchmarks.serving import warm_up

NAME = "kvpress_peer"
TARGET = 0.90
METHODS = ("full", "full@kvm", "snapkv", "streamingllm")
DEFAULT_METHODS = ("full", "snapkv", "streamingllm")
DEFAULT_VENV = REPO / ".cache" / "kvpress-venv"
KVPRESS_VERSION = "0.5.5"
TORCH_PIN = "torch==2.13.0"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=3, help="Retr.KV sessions (contexts)")
    parser.add_argument("--context-tokens", type=int, default=2000)
    parser.add_argument("--turns", type=int, default=4, help="questions per context")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                        help="subset of full,full@kvm,snapkv,streamingllm (full@kvm: full on this project's kvm "
                             "backend instead of SGLang's torch_native one; kvpress runs no press for it)")
    parser.add_argument("--budget", type=int, default=512, help="keys kept per KV head (SnapKV, StreamingLLM)")
    parser.add_argument("--window", type=int, default=32, help="SnapKV observation window (ours' default; kvpress' is 64)")
    parser.add_argument("--kernel-size", type=int, default=5, help="SnapKV pooling kernel (both default 5)")
    parser.add_argument("--sink", type=int, default=128, help="StreamingLLM sink keys (ours' default; kvpress' is 4)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                        help="model dtype on both sides (server --dtype, kvpress' torch dtype); the checkpoint is "
                             "bf16, float32 keeps rounding from flipping greedy choices between the two runtimes")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="kvpress' own virtual environment")
    parser.add_argument("--setup", action="store_true", help="create the kvpress venv first (needs PyPI)")
    parser.add_argument("--out", type=Path, default=default_out(NAME))
    return parser.parse_args(argv)


# --------------------------------------------------------------------------------------------------
# The kvpress environment
# --------------------------------------------------------------------------------------------------


def setup_venv(venv: Path) -> str | None:
    """Creates kvpress' venv (CPU torch pinned, then kvpress); returns why it failed, or None."""
    python = venv / "bin" / "python"
    constraint = venv.parent / "kvpress-constraints.txt"
    steps = []
    if not python.exists():
        steps.append(["python3.11", "-m", "venv", str(venv)])
    steps += [[str(python), "-m", "pip", "install", "--quiet", TORCH_PIN],
              [str(python), "-m", "pip", "install", "--quiet", f"kvpress=={KVPRESS_VERSION}"]]
    constraint.parent.mkdir(parents=True, exist_ok=True)
    constraint.write_text(TORCH_PIN + "\n")
    env = {**os.environ, "PIP_CONSTRAINT": str(constraint)}
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()
            return f"`{' '.join(step)}` failed: {last[-1] if last else done.returncode}"
    return None


PROBE = (
    "import json, torch, transformers, kvpress\n"
    "from kvpress import SnapKVPress, StreamingLLMPress\n"
    "from importlib import metadata\n"
    "print(json.dumps({'torch': torch.__version__, 'cuda': torch.version.cuda, "
    "'transformers': transformers.__version__, 'kvpress': metadata.version('kvpress')}))\n"
)


def probe_venv(venv: Path) -> tuple[dict | None, str | None]:
    """(versions, None) when kvpress imports with a CPU torch in `venv`, else (None, one-line reason)."""
    python = venv / "bin" / "python"
    if not python.exists():
        return None, (f"no kvpress environment at {venv} (kvpress needs transformers<5.3, this project pins 5.19, "
                      f"so it lives in its own venv): run with --setup to create it")
    done = subprocess.run([str(python), "-c", PROBE], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return None, f"kvpress does not import in {venv}: {lines[-1] if lines else done.returncode}"
    info = json.loads(done.stdout.strip().splitlines()[-1])
    if info.get("cuda"):
        return None, f"{venv} holds a CUDA torch ({info['torch']}); expected the CPU build"
    return info, None


# --------------------------------------------------------------------------------------------------
# Comparison helpers
# --------------------------------------------------------------------------------------------------


def agree(a: str, b: str) -> bool:
    return a.strip() == b.strip()


def first_difference(a: str, b: str) -> int:
    a, b = a.strip(), b.strip()
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def press_name(name: str) -> str:
    return name.partition("@")[0]  # full@kvm is full on kvpress' side


def method_args_for(name: str, args) -> tuple[str, ...]:
    if name == "snapkv":
        return (f"budget={args.budget}", f"window={args.window}", f"kernel_size={args.kernel_size}")
    if name == "streamingllm":
        return (f"budget={args.budget}", f"sink={args.sink}")
    return ()


def press_spec(name: str, args) -> dict:
    return {"name": press_name(name), "budget": args.budget, "window": args.window, "kernel_size": args.kernel_size,
            "sink": args.sink}


def plain_session(task, sample, spec) -> dict:
    """A session as kvpress' pipeline takes it: the context and each question as plain text (it
    wraps them in the chat template itself), exactly the text of the project's multi-request pieces."""
    from programs.prompts import session_prompts

    text = session_prompts(task, sample, None, spec.prompts, spec.max_turns)
    return {"id": sample.id, "context": text.context(),
            "questions": [text.question(i) for i in range(len(text.sample.turns))],
            "max_new_tokens": task.max_new_tokens}


def measure_ours(args, methods, task, samples, spec, count) -> dict[str, dict[str, dict]]:
    """One managed server per method, multi-request sessions through the session runner."""
    from bench.runner import run_session
    from runtime.backend import connect
    from runtime.method_server import serve_method

    instances = {name: resolve_method_list([press_name(name)], method_args_for(name, args))[press_name(name)]
                 for name in methods}
    ours: dict[str, dict[str, dict]] = {}
    for name in methods:
        ours[name] = {}
        with serve_method(instances[name], log_path=args.out / f"server-{name}.log",
                          extra_args=("--dtype", args.dtype), kvm_always=name.endswith("@kvm")) as server:
            conn = connect(server.url)
            warm_up(server.url)
            for sample in samples:
                with Recorder() as recorder:
                    t0 = time.monotonic()
                    outcome = run_session(conn, task, sample, "multi-request", spec, count)
                    wall = time.monotonic() - t0
                if outcome.error:
                    raise RuntimeError(f"ours {name} {sample.id}: {outcome.error}")
                by_id = {c.meta.get("id"): c for c in recorder.generate_calls()}
                calls = [by_id[r.request_id] for r in outcome.records]  # turn order (forks start in any order)
                ours[name][sample.id] = {
                    "wall_s": wall, "predictions": [r.prediction for r in outcome.records],
                    "scores": [r.score for r in outcome.records],
                    "prompt_tokens": [r.prompt_tokens for r in outcome.records],
                    "prompts": [c.payload["text"] for c in calls],
                    "settings": server.method.to_dict(),
                }
                print(f"  ours    {name:<12} {sample.id}: {wall:.1f} s", flush=True)
    return ours


def measure_kvpress(args, methods, task, samples, spec, model_path: str) -> tuple[dict | None, str | None]:
    """One worker process in kvpress' venv, the model loaded once, every press and session; returns
    (its result, None) or (None, why it failed)."""
    job = {
        "model_path": model_path, "dtype": args.dtype,
        "presses": [press_spec(name, args) for name in dict.fromkeys(map(press_name, methods))],
        "sessions": [plain_session(task, s, spec) for s in samples],
    }
    job_path, result_path = args.out / "kvpress_job.json", args.out / "kvpress_result.json"
    write_json(job_path, job)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONPATH": ""}
    done = subprocess.run([str(args.venv / "bin" / "python"), str(REPO / "benchmarks" / "kvpress_worker.py"),
                           str(job_path), str(result_path)], env=env, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return None, f"the worker failed: {lines[-1] if lines else done.returncode}"
    return json.loads(result_path.read_text()), None


def compare(methods, task, samples, ours, theirs) -> tuple[list[tuple], dict[str, dict], list[dict]]:
    """Per method: answers agreed, wall times, scores, prompt equality; returns (table rows,
    summary, disagreements)."""
    by_key = {(r["press"], r["session"]): r for r in theirs["results"]}
    rows, summary, disagreements = [], {}, []
    for name in methods:
        n = agreed = 0
        ours_wall = kv_wall = 0.0
        prompts_equal = tokens_equal = split_equal = True
        ours_score = kv_score = 0.0
        for sample in samples:
            o, k = ours[name][sample.id], by_key[(press_name(name), sample.id)]
            ours_wall += o["wall_s"]
            kv_wall += k["wall_s"]
            prompts_equal &= o["prompts"] == k["prompts"]
            tokens_equal &= o["prompt_tokens"] == k["prompt_tokens"]
            split_equal &= all(k["split_tokenization_equal"])
            for i, (p_ours, p_kv) in enumerate(zip(o["predictions"], k["answers"])):
                n += 1
                turn = sample.turns[i]
                ours_score += task.score(p_ours, turn, sample)
                kv_score += task.score(p_kv, turn, sample)
                if agree(p_ours, p_kv):
                    agreed += 1
                else:
                    disagreements.append({"method": name, "session": sample.id, "question": i + 1, "ours": p_ours,
                                          "kvpress": p_kv, "first_difference": first_difference(p_ours, p_kv),
                                          "gold": turn.answer})
        summary[name] = {"answers": n, "agreed": agreed, "agreement": agreed / n if n else None,
                         "ours_wall_s": ours_wall, "kvpress_wall_s": kv_wall,
                         "kvpress_over_ours": ratio(kv_wall, ours_wall), "ours_score": ours_score / n,
                         "kvpress_score": kv_score / n, "prompts_equal": prompts_equal,
                         "prompt_tokens_equal": tokens_equal, "kvpress_split_tokenization_equal": split_equal}
        s = summary[name]
        rows.append((name, n, agreed, fmt_pct(s["agreement"], 0), f"{ours_wall:.1f}", f"{kv_wall:.1f}",
                     fmt_ratio(s["kvpress_over_ours"]), f"{100 * s['ours_score']:.0f}", f"{100 * s['kvpress_score']:.0f}",
                     "yes" if prompts_equal else "NO", "yes" if tokens_equal and split_equal else "NO"))
    return rows, summary, disagreements


def print_comparison(args, methods, task, samples, count, theirs, rows, summary, disagreements) -> dict[str, bool]:
    """The table, the disagreements and the target lines; returns the verdicts."""
    kept = sorted({r["kept_tokens"] for r in theirs["results"] if r["kept_tokens"] is not None})
    print(f"\nRetr.KV, {args.samples} contexts x {args.turns} questions ({count(samples[0].context)}-token contexts), "
          f"max_new_tokens {task.max_new_tokens}, greedy. ours: multi-request sessions on SGLang (one server per "
          f"method); kvpress {theirs['versions']['kvpress']} (transformers {theirs['versions']['transformers']}, "
          f"{theirs['versions']['dtype']}, {theirs['versions']['attn_implementation']}) pipeline, compress once + "
          f"answer each. Settings: budget {args.budget} keys per KV head (kvpress kept {kept}), SnapKV window "
          f"{args.window} kernel {args.kernel_size} avgpool, StreamingLLM sink {args.sink}")
    print(table(["method", "answers", "agree", "agreement", "ours s", "kvpress s", "kvpress/ours", "ours score",
                 "kvpress score", "same prompt text", "same token ids"], rows))
    print("ours s: run_session wall time (flush, context commit, concurrent questions); kvpress s: the pipeline call "
          "(compress + answers, one after the other), model loading excluded on both sides; score: Retr.KV x100")
    if disagreements:
        full_disagree = {(d["session"], d["question"]) for d in disagreements if d["method"] == "full"}
        print("\nDisagreements (answers after strip; @i = first differing character):")
        for d in disagreements:
            also = " [also differs under full]" if d["method"] != "full" and (d["session"], d["question"]) in full_disagree else ""
            print(f"  {d['method']:<12} {d['session']} q{d['question']} @{d['first_difference']}: ours {d['ours'].strip()[:70]!r} "
                  f"| kvpress {d['kvpress'].strip()[:70]!r}{also}")
    graded = [m for m in methods if not m.startswith("full")]
    met = bool(graded) and all(summary[m]["agreement"] is not None and summary[m]["agreement"] >= TARGET for m in graded)
    faster = bool(graded) and all((summary[m]["kvpress_over_ours"] or 0) > 1.0 for m in graded)
    print()
    print(target_line(f"answer agreement with kvpress >= {TARGET:.0%} under the same settings",
                      ", ".join(f"{m} {fmt_pct(summary[m]['agreement'], 0)}" for m in methods), met))
    print(target_line("faster than kvpress end to end (kvpress/ours > 1) for the presses",
                      ", ".join(f"{m} {fmt_ratio(summary[m]['kvpress_over_ours'])}" for m in methods), faster))
    return {"met": met, "faster": faster}


def main(argv=None) -> None:
    args = parse_args(argv)
    methods = choice_list(args.methods, METHODS, "--methods")
    failure = setup_venv(args.venv) if args.setup else None
    reason = failure or probe_venv(args.venv)[1]
    if reason:
        print(f"kvpress cannot run here: {reason}")
        return
    from transformers import AutoTokenizer

    from bench.runner import BenchSpec
    from benchmarks.samples import kv_samples
    from data.generators import token_counter
    from programs import get_task
    from runtime.model import resolve_model
    from runtime.versions import versions

    model_path = resolve_model(EMBEDDED)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    count = token_counter(tokenizer)
    task = get_task("kv")
    samples = kv_samples(tokenizer, context_tokens=args.context_tokens, turns=args.turns, samples=args.samples,
                         seed=args.seed)
    spec = BenchSpec(tasks=("kv",), modes=("multi-request",), num_samples=args.samples, num_turns=args.turns,
                     seed=args.seed, gold_likelihood=False)  # timed against kvpress: no probes
    args.out.mkdir(parents=True, exist_ok=True)
    load_before, started = load_note(), time.monotonic()

    ours = measure_ours(args, methods, task, samples, spec, count)
    theirs, reason = measure_kvpress(args, methods, task, samples, spec, model_path)
    if reason:
        print(f"kvpress cannot run here: {reason}")
        return
    load_after, total = load_note(), time.monotonic() - started

    rows, summary, disagreements = compare(methods, task, samples, ours, theirs)
    verdict = print_comparison(args, methods, task, samples, count, theirs, rows, summary, disagreements)
    print(f"{load_text(load_before)} before, {load_text(load_after)} after; total {total:.0f} s")
    path = write_json(args.out / "result.json", {
        "benchmark": NAME, "args": {k: str(v) for k, v in vars(args).items()}, "versions": versions(),
        "kvpress_versions": theirs["versions"], "summary": summary, "disagreements": disagreements, "ours": ours,
        "kvpress": theirs["results"], "target": TARGET, **verdict, "load_before": load_before,
        "load_after": load_after, "total_s": total,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
