"""A stand-in HTTP server on 127.0.0.1 for CLI tests that need an `--endpoint` but no model.

`kind="health-only"`: answers `/health` and nothing else (an unrelated service on the port).
`kind="sglang"`: answers what `runtime.backend.connect` reads (`/health`, `/get_model_info`,
`/get_server_info`, `/v1/models`, `/flush_cache`) like SGLang does, and fails every `/generate`
with `generate_error` (status, message): by default HTTP 400 in SGLang's words for a prompt over
the model's context length, so every session fails the way an over-long request fails.

    with FakeServer("sglang", model_path=path) as url: ...
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeServer:
    def __init__(self, kind: str = "sglang", model_path: str = "", context_length: int = 8192,
                 generate_error: tuple[int, str] = (400, "The input (9000 tokens) is longer than the model's context length (8192 tokens).")):
        self.kind = kind
        self.generate_error = generate_error
        self.model_path = model_path
        self.context_length = context_length
        self.requests: list[str] = []
        self._server: ThreadingHTTPServer | None = None

    def _routes(self) -> dict[str, tuple[int, dict]]:
        routes = {"/health": (200, {})}
        if self.kind == "sglang":
            routes.update({
                "/get_model_info": (200, {"model_path": self.model_path, "tokenizer_path": self.model_path,
                                          "is_generation": True}),
                "/get_server_info": (200, {"model_path": self.model_path, "page_size": 1,
                                           "max_total_num_tokens": 32768, "version": "0.0-fake"}),
                "/v1/models": (200, {"data": [{"id": self.model_path, "max_model_len": self.context_length}]}),
                "/flush_cache": (200, {}),
                "/generate": (self.generate_error[0], {"error": {"message": self.generate_error[1]}}),
            })
        return routes

    def __enter__(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                path = self.path.split("?")[0]
                fake.requests.append(path)
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                status, body = fake._routes().get(path, (404, {"detail": "Not Found"}))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *args) -> None:  # keep test output clean
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __exit__(self, *exc) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


if __name__ == "__main__":  # run one by hand: python -m tests.fake_sglang sglang MODEL_PATH
    import sys
    import time

    with FakeServer(sys.argv[1], *(sys.argv[2:3])) as url:
        print(url, flush=True)
        while True:
            time.sleep(3600)
