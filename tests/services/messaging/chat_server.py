"""A local HTTP server speaking the OpenAI chat-completions protocol, with scripted answers (429, 5xx, slow)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from tests.support.local_http import Reply, ScriptedServer


def completion(content: str, model: str = "test-model") -> dict[str, Any]:
    """A chat-completions success body."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
    }


@contextlib.asynccontextmanager
async def chat_server(*script: Reply) -> AsyncIterator[ScriptedServer]:
    """A running server answering ``POST /v1/chat/completions`` from the script (the last reply repeats)."""
    async with ScriptedServer("/v1/chat/completions", base_path="/v1", script=script).running() as server:
        yield server
