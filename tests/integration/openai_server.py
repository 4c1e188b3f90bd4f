"""A loopback HTTP server that speaks the parts of the OpenAI API the ``openai`` backend uses.

Stdlib only (``http.server`` in a thread on 127.0.0.1, an ephemeral port), so the backend is
tested over real HTTP through the real SDK, with no network:

``POST /v1/files`` (multipart), ``GET /v1/files``, ``POST /v1/fine_tuning/jobs``,
``GET /v1/fine_tuning/jobs`` (``metadata[k]=v`` filter, ``after``/``limit`` cursor),
``GET /v1/fine_tuning/jobs/{id}``, ``POST .../{id}/cancel``, ``GET .../{id}/events``,
``GET .../{id}/checkpoints``, ``POST /v1/chat/completions``.

Behaviour a test sets on the :class:`FakeOpenAI` state:

* ``script``: the statuses a new job walks through, one step per ``retrieve``; the last one
  stays. A ``succeeded`` job gets a fine-tuned model, trained tokens and a checkpoint; a
  ``failed`` one gets ``fail_message`` as its error.
* ``inject(method, path_prefix, status, message, headers, times)``: the next ``times`` matching
  requests get that error (a 400 refusal, 401, 429 with Retry-After, 500...).
* ``create_delay_s``: a job is created at once but its response is held this long (longer than
  the client's timeout: the lost response that makes SDK retries dangerous).
* ``ignore_metadata_filter``: list jobs as a server that does not know the filter would.
* ``list_lag_s``: a new job shows in ``GET /fine_tuning/jobs`` only this long after its creation
  (an eventually consistent listing: the lost response is not found at once).

Every request is recorded (method, path, time, the bearer key) and creates are counted.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

WIND_DOWN = (
    "Fine-tuning is no longer available to new jobs: OpenAI closed self-serve "
    "fine-tuning on 2027-01-06. Existing fine-tuned models keep serving."
)


@dataclass
class Injected:
    method: str
    path_prefix: str
    status: int
    message: str
    headers: dict[str, str]
    times: int


@dataclass
class FakeOpenAI:
    """The server's state; tests read and set it between requests (under ``lock``)."""

    api_key: str
    script: list[str] = field(default_factory=lambda: ["validating_files", "running", "succeeded"])
    fail_message: str = "The job failed due to an invalid training file: line 3 is malformed."
    create_delay_s: float = 0.0
    ignore_metadata_filter: bool = False
    list_lag_s: float = 0.0
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    creates: int = 0
    requests: list[tuple[str, str, float, str]] = field(default_factory=list)
    injected: list[Injected] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _seq: int = 0

    def inject(
        self,
        method: str,
        path_prefix: str,
        status: int,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        with self.lock:
            self.injected.append(
                Injected(method, path_prefix, status, message, headers or {}, times)
            )

    def next_id(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}-{self._seq:06d}"

    def count(self, method: str, path_prefix: str) -> int:
        return sum(1 for m, p, _, _ in self.requests if m == method and p.startswith(path_prefix))


def _error(status: int, message: str) -> dict[str, Any]:
    kinds = {
        400: "invalid_request_error",
        401: "invalid_request_error",
        403: "permission_error",
        404: "invalid_request_error",
        429: "rate_limit_error",
    }
    return {
        "error": {
            "message": message,
            "type": kinds.get(status, "server_error"),
            "param": None,
            "code": None,
        }
    }


def _page(items: list[dict[str, Any]], query: dict[str, list[str]]) -> dict[str, Any]:
    """Newest first; ``after`` is the id of the last item of the previous page."""
    limit = int(query.get("limit", ["20"])[0])
    after = query.get("after", [None])[0]
    if after is not None:
        ids = [i["id"] for i in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    return {"object": "list", "data": items[:limit], "has_more": len(items) > limit}


class _Handler(BaseHTTPRequestHandler):
    state: FakeOpenAI  # set on the subclass made per server

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        return

    # -- plumbing
    def _send(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout)
            pass

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _handle(self, method: str) -> None:
        st = self.state
        url = urlsplit(self.path)
        path, query = url.path.removeprefix("/v1"), parse_qs(url.query)
        body = self._body()
        key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        with st.lock:
            st.requests.append((method, path, time.monotonic(), key))
            for inj in st.injected:
                if inj.times > 0 and inj.method == method and path.startswith(inj.path_prefix):
                    inj.times -= 1
                    return self._send(inj.status, _error(inj.status, inj.message), inj.headers)
        keyless = path.startswith("/chat/") and key == "not-needed"
        if key != st.api_key and not keyless:
            shown = f"{key[:5]}****{key[-4:]}" if len(key) > 9 else "****"
            return self._send(
                401,
                _error(
                    401,
                    f"Incorrect API key provided: {shown}. You can "
                    "find your API key in your account settings.",
                ),
            )
        try:
            self._route(method, path, query, body)
        except KeyError:
            self._send(404, _error(404, f"No such object: {path}"))

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    # -- routes
    def _route(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> None:
        st = self.state
        m = re.fullmatch(r"/fine_tuning/jobs/([^/]+)(/\w+)?", path)
        if path == "/files" and method == "POST":
            return self._send(200, self._upload(body))
        if path == "/files" and method == "GET":
            with st.lock:
                files = [dict(f, content=None) for f in reversed(st.files.values())]
            return self._send(200, {"object": "list", "data": files, "has_more": False})
        if path == "/fine_tuning/jobs" and method == "POST":
            return self._create(json.loads(body))
        if path == "/fine_tuning/jobs" and method == "GET":
            with st.lock:
                now = time.monotonic()
                jobs = [j for j in reversed(st.jobs.values()) if j["_visible_at"] <= now]
            wanted = {
                k[len("metadata[") : -1]: v[0]
                for k, v in query.items()
                if k.startswith("metadata[")
            }
            if wanted and not st.ignore_metadata_filter:
                jobs = [
                    j
                    for j in jobs
                    if all((j["metadata"] or {}).get(k) == v for k, v in wanted.items())
                ]
            return self._send(200, _page(jobs, query))
        if m and method == "GET" and m.group(2) is None:
            return self._send(200, self._advance(m.group(1)))
        if m and method == "POST" and m.group(2) == "/cancel":
            with st.lock:
                job = st.jobs[m.group(1)]
                if job["status"] in ("succeeded", "failed", "cancelled"):
                    return self._send(400, _error(400, "Job has already finished."))
                job["status"] = "cancelled"
                job["_events"].append(self._event(job, "Job cancelled", "message", None))
            return self._send(200, self._public(job))
        if m and method == "GET" and m.group(2) == "/events":
            with st.lock:
                events = list(reversed(st.jobs[m.group(1)]["_events"]))
            return self._send(200, _page(events, query))
        if m and method == "GET" and m.group(2) == "/checkpoints":
            with st.lock:
                cps = list(reversed(st.jobs[m.group(1)]["_checkpoints"]))
            return self._send(200, _page(cps, query))
        if path == "/chat/completions" and method == "POST":
            return self._send(200, self._chat(json.loads(body)))
        raise KeyError(path)

    def _upload(self, body: bytes) -> dict[str, Any]:
        head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        fields: dict[str, Any] = {}
        for part in msg.iter_parts():
            name = str(part.get_param("name", header="content-disposition"))
            fields[name] = (part.get_filename(), part.get_payload(decode=True))
        filename, content = fields["file"]
        with self.state.lock:
            fid = self.state.next_id("file")
            rec = {
                "id": fid,
                "object": "file",
                "bytes": len(content),
                "created_at": int(time.time()),
                "filename": filename,
                "purpose": fields["purpose"][1].decode(),
                "status": "processed",
                "content": content,
            }
            self.state.files[fid] = rec
        return dict(rec, content=None)

    def _create(self, req: dict[str, Any]) -> None:
        st = self.state
        with st.lock:
            if req.get("training_file") not in st.files:
                return self._send(400, _error(400, "invalid training_file"))
            st.creates += 1
            jid = st.next_id("ftjob")
            lines = st.files[req["training_file"]]["content"].count(b"\n")
            job = {
                "id": jid,
                "object": "fine_tuning.job",
                "created_at": int(time.time()),
                "error": None,
                "fine_tuned_model": None,
                "finished_at": None,
                "hyperparameters": {
                    "n_epochs": "auto",
                    "batch_size": "auto",
                    "learning_rate_multiplier": "auto",
                },
                "model": req["model"],
                "organization_id": "org-loopback",
                "result_files": [],
                "seed": req.get("seed") or 42,
                "status": st.script[0],
                "trained_tokens": None,
                "training_file": req["training_file"],
                "validation_file": req.get("validation_file"),
                "metadata": req.get("metadata"),
                "method": req.get("method"),
                "_suffix": req.get("suffix"),
                "_step": 0,
                "_script": list(st.script),
                "_lines": lines,
                "_events": [],
                "_checkpoints": [],
                "_request": req,
                "_visible_at": time.monotonic() + st.list_lag_s,
            }
            job["_events"].append(self._event(job, "Created fine-tuning job", "message", None))
            st.jobs[jid] = job
            delay = st.create_delay_s
        if delay:
            time.sleep(delay)  # the job exists; its answer comes too late for the client
        self._send(200, self._public(job))

    def _event(self, job: dict[str, Any], message: str, kind: str, data: Any) -> dict[str, Any]:
        return {
            "id": f"{job['id']}-ev{len(job['_events']) + 1:04d}",
            "object": "fine_tuning.job.event",
            "created_at": int(time.time()),
            "level": "error" if "failed" in message else "info",
            "message": message,
            "data": data,
            "type": kind,
        }

    def _advance(self, jid: str) -> dict[str, Any]:
        with self.state.lock:
            job = self.state.jobs[jid]
            if job["status"] in ("succeeded", "failed", "cancelled"):
                return self._public(job)
            job["_step"] += 1
            script = job["_script"]
            job["status"] = script[min(job["_step"], len(script) - 1)]
            if job["status"] == "running":
                step = len([e for e in job["_events"] if e["type"] == "metrics"]) + 1
                data = {
                    "step": step,
                    "train_loss": round(2.0 / step, 4),
                    "total_steps": 4,
                    "train_mean_token_accuracy": 0.5,
                }
                job["_events"].append(
                    self._event(
                        job, f"Step {step}/4: training loss={data['train_loss']}", "metrics", data
                    )
                )
            elif job["status"] == "succeeded":
                suffix = job["_suffix"] or "model"
                job["fine_tuned_model"] = f"ft:{job['model']}:loopback:{suffix}:{jid[-6:]}"
                job["trained_tokens"] = 1000 * job["_lines"]
                job["finished_at"] = int(time.time())
                job["_checkpoints"].append(
                    {
                        "id": f"ftckpt-{jid}",
                        "object": "fine_tuning.job.checkpoint",
                        "created_at": int(time.time()),
                        "fine_tuning_job_id": jid,
                        "fine_tuned_model_checkpoint": job["fine_tuned_model"] + ":ckpt-step-4",
                        "step_number": 4,
                        "metrics": {
                            "step": 4,
                            "train_loss": 0.25,
                            "valid_loss": 0.4,
                            "full_valid_loss": 0.42,
                            "train_mean_token_accuracy": 0.9,
                        },
                    }
                )
                job["_events"].append(
                    self._event(job, "The job has successfully completed", "message", None)
                )
            elif job["status"] == "failed":
                job["error"] = {
                    "code": "invalid_training_file",
                    "message": self.state.fail_message,
                    "param": "training_file",
                }
                job["_events"].append(self._event(job, "The job failed", "message", None))
            return self._public(job)

    @staticmethod
    def _public(job: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in job.items() if not k.startswith("_")}

    def _chat(self, req: dict[str, Any]) -> dict[str, Any]:
        last = next(
            (m.get("content") or "" for m in reversed(req["messages"]) if m.get("role") == "user"),
            "",
        )
        message: dict[str, Any] = {"role": "assistant", "content": f"echo: {last}"}
        finish = "stop"
        if req.get("tools") and "weather" in last:
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            }
            finish = "tool_calls"
        prompt = sum(len(str(m.get("content") or "").split()) for m in req["messages"])
        completion = len(str(message.get("content") or "").split()) or 5
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req["model"],
            "choices": [
                {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
            "_seen": {
                "temperature": req.get("temperature"),
                "max_tokens": req.get("max_tokens"),
                "system": [m["content"] for m in req["messages"] if m.get("role") == "system"],
            },
        }


@contextmanager
def serve(api_key: str) -> Iterator[tuple[str, FakeOpenAI]]:
    """``(base_url, state)`` of a server running in a thread until the block ends."""
    state = FakeOpenAI(api_key=api_key)
    handler = type("Handler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="fake-openai", daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
