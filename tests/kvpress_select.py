"""Runs in kvpress' own virtual environment (see benchmarks/kvpress_peer.py --setup):

    <kvpress venv>/bin/python tests/kvpress_select.py JOB.pt RESULT.json

JOB.pt holds {"q": [L, Hq, D], "k": [L, Hkv, D] (post-RoPE queries and keys, one dtype), "press":
"snapkv" | "streamingllm", "budget", "window", "kernel_size", "sink", "num_layers", "layer"}.
kvpress compresses a layer's cache with the press, keeping `budget` keys per KV head; RESULT.json
gets {"kept": [[positions kept by KV head 0], ...], "kvpress": version}.

The press runs on a real transformers LlamaAttention whose query projection is the identity and
whose rotary embedding is cos = 1, sin = 0, so the queries kvpress computes from the "hidden
states" are exactly q. The values carry each key's position, so the pruned values say which keys
were kept. Imports only torch, transformers and kvpress.
"""

from __future__ import annotations

import json
import sys
from importlib import metadata

import torch


def main(job_path: str, result_path: str) -> None:
    from kvpress import SnapKVPress, StreamingLLMPress
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaAttention

    job = torch.load(job_path)
    q, k = job["q"], job["k"]
    length, hq, d = q.shape
    hkv = k.shape[1]
    config = LlamaConfig(hidden_size=hq * d, num_attention_heads=hq, num_key_value_heads=hkv, head_dim=d,
                         num_hidden_layers=job["num_layers"], intermediate_size=4 * hq * d)
    module = LlamaAttention(config, layer_idx=job["layer"]).to(q.dtype)
    with torch.no_grad():
        module.q_proj.weight.copy_(torch.eye(hq * d, dtype=q.dtype))
    ratio = max(0.0, 1.0 - (job["budget"] + 0.5) / length)  # kvpress keeps int(L * (1 - ratio))
    if job["press"] == "snapkv":
        press = SnapKVPress(compression_ratio=ratio, window_size=job["window"], kernel_size=job["kernel_size"])
    else:
        press = StreamingLLMPress(compression_ratio=ratio, n_sink=job["sink"])
    hidden = q.reshape(1, length, hq * d)
    keys = k[None].transpose(1, 2)
    positions = torch.arange(length)[None, None, :, None].expand(1, hkv, length, d).contiguous()
    rope = (torch.ones(1, length, d, dtype=q.dtype), torch.zeros(1, length, d, dtype=q.dtype))
    with torch.no_grad():
        _, kept = press.compress(module, hidden, keys, positions, None, {"position_embeddings": rope})
    result = {"kept": [sorted(kept[0, h, :, 0].tolist()) for h in range(hkv)], "kvpress": _version()}
    with open(result_path, "w", encoding="utf-8") as fh:
        json.dump(result, fh)


def _version() -> str | None:
    try:
        return metadata.version("kvpress")
    except metadata.PackageNotFoundError:  # a source checkout on the path
        return None


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
