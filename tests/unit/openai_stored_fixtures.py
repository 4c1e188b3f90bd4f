"""OpenAI stored chat completions and stored messages, shaped as OpenAI's API reference shows
``GET /v1/chat/completions`` and ``GET /v1/chat/completions/{id}/messages`` return them."""

from __future__ import annotations

from typing import Any


def completion(cid: str, created: int, message: dict[str, Any], meta: dict[str, str],
                usage: tuple[int, int]) -> dict[str, Any]:  # fmt: skip
    """A stored chat completion as ``GET /v1/chat/completions`` lists it."""
    return {
        "object": "chat.completion", "id": cid, "model": "gpt-4o-2024-08-06", "created": created,
        "request_id": f"req_{cid[-4:]}", "tool_choice": None, "seed": None, "top_p": 1.0,
        "temperature": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0,
        "system_fingerprint": "fp_50cad350e4", "input_user": "cust-812", "service_tier": "default",
        "tools": None, "metadata": meta, "response_format": None,
        "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1],
                  "total_tokens": sum(usage)},
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None, "message": {
            "role": "assistant", "tool_calls": None, "function_call": None, **message}}],
    }  # fmt: skip


def stored_message(cid: str, i: int, role: str, content: str | None, **kw: Any) -> dict[str, Any]:
    return {"id": f"{cid}-{i}", "role": role, "content": content, "name": None,
            "content_parts": None, **kw}  # fmt: skip
