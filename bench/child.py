"""What the benchmarks run in a fresh Python process, with only the artifact on sys.path.

`bench.run` starts it as `python3.13 -I -S -B child.py MODE PATHS ...`: -I -S keep every
installed package off sys.path (only the artifact is there, as in /var/task), -B writes no
bytecode (/var/task is read-only).

- `cold PATHS MODULE EVENT STAMPS`: import MODULE's `handler`, serve EVENT once, and write to
  the file STAMPS the monotonic clock (ns) when the import was done and when the handler
  returned, and the process's CPU time (ns) then: Lambda bills init and the invocation up to
  that return, not the interpreter's teardown, which the parent times apart (spawn to exit).
- `count PATHS MODULE EVENT`: the same without the stamps, ending the process as soon as the
  handler returns, for valgrind to count the instructions up to there.
- `warm PATHS EVENT COUNT`: COUNT rounds of: `/chat` through the chat API's handler with
  client-sent history (stateless: nothing stored), `/chat` continuing one session by its id,
  the same call made with the `openai` client alone, and a turn's write to the session store
  timed alone; prints JSON lists of milliseconds.

A cold child imports nothing its handler does not import itself: only what the interpreter
has loaded before `main` (`sys`, `time`, `io`), so no variant's modules are paid for by the
child. Everything else is imported inside `warm`.
"""

from __future__ import annotations

import sys
import time

# Not typing.TYPE_CHECKING: importing typing here would be the child's, not the handler's.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

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
    import json  # every handler imported it already: this costs a dict lookup

    with open(path) as file:
        event: dict[str, Any] = json.load(file)
    return event


def cold(module_name: str, event_path: str, stamps_path: str) -> None:
    """Import the handler, serve one event, and write when each was done."""
    handler = __import__(module_name, fromlist=["handler"]).handler
    event = load_event(event_path)
    imported = time.monotonic_ns()
    response = handler(event, Context())
    returned = time.monotonic_ns()
    cpu = time.process_time_ns()
    with open(stamps_path, "w") as stamps:
        stamps.write(f"{imported} {returned} {cpu}")
    check(module_name, response)


def cold_counted(module_name: str, event_path: str) -> None:
    """Import the handler, serve one event, and end right there (valgrind counts up to it)."""
    handler = __import__(module_name, fromlist=["handler"]).handler
    check(module_name, handler(load_event(event_path), Context()))
    import os  # the handler imported it already

    sys.stdout.flush()
    os._exit(0)  # no teardown: Lambda does not bill it


def check(module_name: str, response: dict[str, Any]) -> None:
    if response["statusCode"] != 200:
        raise SystemExit(f"{module_name}: HTTP {response['statusCode']}: {response['body']}")


def warm(event_path: str, count: int) -> dict[str, list[float]]:
    """Milliseconds per call: both kinds of `/chat`, the client alone, a turn's write alone."""
    import asyncio
    import importlib
    import json
    import secrets
    from typing import cast

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
    sys.path[:0] = paths.split(":")  # os.pathsep on Linux, without importing os
    if mode == "cold":
        cold(*arguments)
    elif mode == "count":
        cold_counted(*arguments)
    else:
        import json

        event_path, count = arguments
        print(json.dumps(warm(event_path, int(count))))


if __name__ == "__main__":
    main(*sys.argv[1:])
