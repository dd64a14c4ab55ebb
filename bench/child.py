"""What the benchmarks run in a fresh Python process, with only the artifact on sys.path.

`bench.run` starts it as `python3.13 -I -S -B child.py MODE PATHS ...`: -I -S keep every
installed package off sys.path (only the artifact is there, as in /var/task), -B writes no
bytecode (/var/task is read-only).

- `cold PATHS MODULE EVENT`: import MODULE's `handler`, serve EVENT once (timed whole by
  the parent, which also reads the process's peak RSS).
- `warm PATHS EVENT COUNT`: COUNT rounds of: `/chat` through the chat API's handler with
  client-sent history (stateless: nothing stored), `/chat` continuing one session by its id,
  the same call made with the `openai` client alone, and a turn's write to the session store
  timed alone; prints JSON lists of milliseconds.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import secrets
import sys
import time
from collections.abc import Callable
from typing import Any, cast

# Stateless `/chat`: earlier turns ride along in the request, as the client remembers them.
HISTORY = [
    {"role": "user", "content": "I am Ada."},
    {"role": "assistant", "content": "Nice to meet you, Ada!"},
    {"role": "user", "content": "I write programs for the Analytical Engine."},
    {"role": "assistant", "content": "A pioneer of computing, then."},
]
MESSAGE = "What is my name?"
WARM_UP = 20


class Context:
    """The attributes of Lambda's context object that a handler may read."""

    function_name = "ChatFunction"
    memory_limit_in_mb = 512
    aws_request_id = "bench"

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left: the full budget."""
        return 29_000


def load_event(path: str) -> dict[str, Any]:
    with open(path) as file:
        event: dict[str, Any] = json.load(file)
    return event


def cold(module_name: str, event_path: str) -> None:
    """Import the handler and serve one event."""
    event = load_event(event_path)
    handler = importlib.import_module(module_name).handler
    response = handler(event, Context())
    if response["statusCode"] != 200:
        raise SystemExit(f"{module_name}: HTTP {response['statusCode']}: {response['body']}")


def warm(event_path: str, count: int) -> dict[str, list[float]]:
    """Milliseconds per call: both kinds of `/chat`, the client alone, a turn's write alone."""
    from openai import AsyncOpenAI

    handler = importlib.import_module("chat_api.handler").handler
    from chat_api.clients import get_session_store
    from chat_api.store.base import Message, NewMessages, Role, Session

    event = load_event(event_path)
    stateless = {**event, "body": json.dumps({"message": MESSAGE, "history": HISTORY})}
    messages: Any = [
        {"role": "system", "content": "You are a helpful assistant."},
        *HISTORY,
        {"role": "user", "content": MESSAGE},
    ]
    # The baseline: the plain client as a tutorial would make it (12 s timeout). The fake
    # upstream never fails, so retry settings do not enter the timing.
    client = AsyncOpenAI(timeout=12, max_retries=1)
    loop = asyncio.new_event_loop()
    context = Context()
    store = get_session_store()  # the handler's own store (SESSIONS_DB_PATH)
    history = [Message(cast("Role", turn["role"]), turn["content"], 0.0) for turn in HISTORY]
    # A turn kept as a new session: the client's history and the turn (what `"store": true` writes).
    written = [*history, Message("user", MESSAGE, 0.0), Message("assistant", "An answer.", 0.0)]

    def new_session(owner: str, stored: list[Message]) -> Session:
        now = time.time()
        session = Session(secrets.token_urlsafe(16), owner, now, now + 86_400)
        store.append(NewMessages(session, stored, create=True), now)
        return session

    # Each continued turn is a session's second: the store holds the same history the
    # stateless call sends, so both send OpenAI the same messages.
    owner = event["requestContext"]["identity"]["apiKeyId"]  # the caller, as API Gateway names it
    continued = iter(
        [
            {**event, "body": json.dumps({"message": MESSAGE, "session_id": session.id})}
            for session in (new_session(owner, history) for _ in range(WARM_UP + count))
        ]
    )

    def invoke(request: dict[str, Any]) -> None:
        response = handler(request, context)
        assert response["statusCode"] == 200, response

    def client_alone() -> None:
        completion = loop.run_until_complete(
            client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        )
        assert completion.choices[0].message.content

    calls: dict[str, Callable[[], object]] = {
        "handler": lambda: invoke(stateless),
        "session": lambda: invoke(next(continued)),
        "client": client_alone,
        "write": lambda: new_session("bench", written),
    }
    for _ in range(WARM_UP):  # connections open, lazy imports done
        for call in calls.values():
            call()
    timings: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(count):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            timings[name].append((time.perf_counter() - start) * 1000)
    return timings


def main(mode: str, paths: str, *arguments: str) -> None:
    sys.path[:0] = paths.split(os.pathsep)
    if mode == "cold":
        cold(*arguments)
    else:
        event_path, count = arguments
        print(json.dumps(warm(event_path, int(count))))


if __name__ == "__main__":
    main(*sys.argv[1:])
