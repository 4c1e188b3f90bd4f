"""Evaluation answering throughput against a loopback OpenAI-compatible server that answers every
chat completion after a fixed delay.

The bound: with ``concurrency`` calls in flight and each taking ``delay`` seconds, no client can
answer faster than ``concurrency / delay`` per second; the issue's goal is >= 80% of it. The
named peer: a bare ``ThreadPoolExecutor`` of the same size calling the same answerer (no
timeout thread, no redaction, no cache), which shows what the openai SDK itself allows on the
machine at hand. What is timed is :func:`ratchet.evaluation.runner.answer_all` (the thread pool,
the rate limiter off, the timeout thread per call, redaction of every answer, the answer
cache) driving the real ``openai`` backend (:class:`ratchet.backends.openai.OpenAIAnswerer`,
the openai SDK over HTTP) on distinct inputs, so nothing comes from the cache. A second pass
over the same inputs shows the cache: zero requests reach the server.

Usage: ``python -m benchmarks.bench_eval_throughput [--cases 400] [--delay 0.05]
[--concurrency 4 16 32]``
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ratchet.backends import BackendContext, answerer_for
from ratchet.backends.base import ModelSpec
from ratchet.config import PipelineConfig
from ratchet.evaluation.runner import AnswerCache, CallPolicy, answer_all
from ratchet.redaction import Redactor
from ratchet.settings import Settings
from ratchet.store import Store


@contextmanager
def delayed_server(delay_s: float) -> Iterator[tuple[str, dict[str, int]]]:
    """``(base_url, counts)``: POST /v1/chat/completions answers after ``delay_s``."""
    counts = {"requests": 0}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # one small response must not wait for a delayed ACK

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                counts["requests"] += 1
            time.sleep(delay_s)
            question = body["messages"][-1]["content"]
            out = json.dumps(
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": f"echo {question}"},
                        }
                    ],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", counts
    finally:
        server.shutdown()
        server.server_close()


def measure(cases: int, delay: float, concurrency: int, root: Path) -> dict[str, Any]:
    config = PipelineConfig()
    settings = Settings(home=root / "home")  # type: ignore[call-arg]
    store = Store(str(root / f"store-{concurrency}"))
    redactor = Redactor(config.redaction)
    inputs = [[{"role": "user", "content": f"question number {i}"}] for i in range(cases)]
    with delayed_server(delay) as (url, counts):
        answerer = answerer_for(
            ModelSpec("openai", "bench-model", parameters={"base_url": url}),
            BackendContext(store, settings, config),
        )
        policy = CallPolicy(concurrency=concurrency, timeout_s=30.0, retries=0)
        cache = AnswerCache(store, "bench")
        started = time.perf_counter()
        out = answer_all(
            answerer,
            inputs,
            cache=cache,
            policy=policy,
            redact=lambda t: redactor.redact_text(t)[0],
        )
        elapsed = time.perf_counter() - started
        cache.flush()
        errors = sum(o.source == "error" for o in out)
        first = counts["requests"]
        again = answer_all(
            answerer,
            inputs,
            cache=AnswerCache(store, "bench"),
            policy=policy,
            redact=lambda t: redactor.redact_text(t)[0],
        )
        rerun_requests = counts["requests"] - first
        with ThreadPoolExecutor(max_workers=concurrency) as pool:  # the peer: a bare pool
            started = time.perf_counter()
            list(
                pool.map(
                    answerer.answer,
                    [[{"role": "user", "content": f"peer {i}"}] for i in range(cases)],
                )
            )
            peer = cases / (time.perf_counter() - started)
    bound = concurrency / delay
    rate = cases / elapsed
    return {
        "cases": cases,
        "delay_s": delay,
        "concurrency": concurrency,
        "answers_per_s": round(rate, 1),
        "bound_per_s": round(bound, 1),
        "share_of_bound": round(rate / bound, 3),
        "errors": errors,
        "peer_bare_pool_per_s": round(peer, 1),
        "share_of_peer": round(rate / peer, 3),
        "rerun_requests": rerun_requests,
        "rerun_cached": sum(o.source == "cached" for o in again),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=400)
    p.add_argument("--delay", type=float, default=0.05)
    p.add_argument("--concurrency", type=int, nargs="+", default=[4, 16, 32])
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for c in args.concurrency:
            print(json.dumps(measure(args.cases, args.delay, c, Path(tmp))))


if __name__ == "__main__":
    main()
