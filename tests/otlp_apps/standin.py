"""An OpenAI-compatible ``POST /v1/chat/completions`` on 127.0.0.1, for the instrumented
apps: real HTTP, so the instrumentation libraries see the answers a real client sees.

Everything it answers follows from the request, so a test can assert text and tokens:

- the answer: the first line of the retrieved context when the prompt carries one (a
  line ``- text`` under a line ``Context:``), else ``The answer to '<question>' is 42.``
  where the question is the last user message;
- usage: prompt_tokens = words in all messages, cached_tokens = prompt_tokens // 2,
  reasoning_tokens = 2, completion_tokens = words in the answer + reasoning_tokens;
- the response model: the dated snapshot of the requested alias (``DATED``), else the
  requested name;
- a request for model ``missing-model`` gets 404 with OpenAI's error body.

``stream: true`` answers server-sent events, one chunk per word, and a last chunk with
the usage when ``stream_options.include_usage`` is set. Every answer closes its
connection, so no handler thread outlives the server waiting on a kept-alive socket.

Run ``python -m tests.otlp_apps.standin``: it prints ``{"port": N}`` and serves until
stopped; or use :class:`Standin` as a context manager.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["CREATED", "DATED", "Standin", "answer_for", "usage_for"]

DATED = {"gpt-4o-mini": "gpt-4o-mini-2024-07-18", "gpt-4o": "gpt-4o-2024-08-06"}
CREATED = 1_721_172_741  # a fixed `created`, so answers are byte-identical across runs
REASONING_TOKENS = 2
MISSING_MODEL = "missing-model"


def _text(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def answer_for(messages: list[dict[str, Any]]) -> str:
    """The deterministic answer to a conversation (see the module docstring)."""
    for message in messages:
        lines = _text(message.get("content")).splitlines()
        if "Context:" in lines:
            after = lines[lines.index("Context:") + 1 :]
            first = next((ln[2:] for ln in after if ln.startswith("- ")), None)
            if first:
                return first
    users = [m for m in messages if m.get("role") == "user"]
    question = _text(users[-1].get("content")) if users else ""
    return f"The answer to '{question}' is 42."


def usage_for(messages: list[dict[str, Any]], answer: str) -> dict[str, Any]:
    prompt = sum(len(_text(m.get("content")).split()) for m in messages)
    completion = len(answer.split()) + REASONING_TOKENS
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": prompt // 2, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": REASONING_TOKENS, "audio_tokens": 0},
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a test's output stays readable

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            request = json.loads(self.rfile.read(length))
        except ValueError:
            self._json(400, {"error": {"message": "body is not JSON", "type": "invalid_request"}})
            return
        with self.server.lock:
            self.server.requests.append(request)
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        model = str(request.get("model", ""))
        if model == MISSING_MODEL:
            message = f"The model `{model}` does not exist or you do not have access to it."
            error = {"message": message, "type": "invalid_request_error", "param": None}
            self._json(404, {"error": {**error, "code": "model_not_found"}})
            return
        messages = request.get("messages") or []
        answer = answer_for(messages)
        usage = usage_for(messages, answer)
        served = DATED.get(model, model)
        number = self.server.next_id()
        if request.get("stream"):
            with_usage = bool((request.get("stream_options") or {}).get("include_usage"))
            ident = f"chatcmpl-standin-{number}"
            self._stream(ident, served, answer, usage if with_usage else None)
            return
        self._json(
            200,
            {
                "id": f"chatcmpl-standin-{number}",
                "object": "chat.completion",
                "created": CREATED,
                "model": served,
                "system_fingerprint": "fp_standin",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer, "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            },
        )

    def _stream(self, ident: str, model: str, answer: str, usage: dict[str, Any] | None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        base = {"id": ident, "object": "chat.completion.chunk", "created": CREATED, "model": model}

        def send(chunk: dict[str, Any]) -> None:
            self.wfile.write(b"data: " + json.dumps({**base, **chunk}).encode() + b"\n\n")
            self.wfile.flush()

        words = answer.split(" ")
        first = {"role": "assistant", "content": ""}
        send({"choices": [{"index": 0, "delta": first, "finish_reason": None}]})
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            send({"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
        send({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if usage is not None:
            send({"choices": [], "usage": usage})
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self._count = 0

    def next_id(self) -> int:
        with self.lock:
            self._count += 1
            return self._count


class Standin:
    """The server on a free loopback port, served from a thread while entered."""

    def __init__(self) -> None:
        self._server = _Server()
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="openai-standin", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as ``base_url``."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        with self._server.lock:
            return list(self._server.requests)

    def __enter__(self) -> Standin:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def main() -> None:
    server = _Server()
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
