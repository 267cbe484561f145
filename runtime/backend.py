"""Connecting the frontend to a server: the managed one or an existing `--endpoint`."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass

from runtime.errors import RuntimeFailure, UsageError
from runtime.server import is_healthy


@dataclass
class Connection:
    """A ready frontend backend, plus what the run needs to know about the served model."""

    url: str
    backend: object  # sglang.RuntimeEndpoint
    tokenizer: object  # transformers tokenizer of the served model
    model_path: str
    chat: bool  # whether a chat template is in use


def model_info(url: str) -> dict:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/get_model_info", timeout=10) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise RuntimeFailure(f"cannot reach SGLang server at {url}: {err}") from err


def load_tokenizer(model_path: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model_path)
    except OSError as err:
        raise UsageError(f"cannot load the tokenizer of '{model_path}': {str(err).splitlines()[0]}") from err


def connect(url: str, *, chat_template: bool = True, tokenizer_path: str | None = None) -> Connection:
    """A `RuntimeEndpoint` on `url` with the model's own chat template (derived from its tokenizer).

    `tokenizer_path` overrides where the tokenizer comes from (for a remote server whose model path
    does not exist here).
    """
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"--endpoint {url}: expected an http:// or https:// URL")
    if not is_healthy(url, timeout=10):
        raise RuntimeFailure(f"no healthy SGLang server at {url} (GET /health failed)")
    info = model_info(url)
    model_path = info.get("model_path") or info.get("tokenizer_path")
    tokenizer = load_tokenizer(tokenizer_path or info.get("tokenizer_path") or model_path)

    import sglang as sgl
    from sglang.lang.chat_template import register_chat_template

    from runtime.chat_template import derive_chat_template

    backend = sgl.RuntimeEndpoint(url)
    template = derive_chat_template(tokenizer, name=f"scbench:{model_path}") if chat_template else None
    if template is not None:
        register_chat_template(template)
        backend.chat_template = template
    return Connection(url=url, backend=backend, tokenizer=tokenizer, model_path=model_path, chat=template is not None)
