"""Lambda execution environments, one process each, all invoking the real handler at once.

Lambda runs one invocation at a time per environment, so 50 concurrent requests are 50
environments that share nothing but what is outside them (the table, OpenAI). Run in a fresh
interpreter (conftest's `run_python`, with the environment the service reads):

    from tests.lambda_fleet import main; main(EVENTS, RESULTS)

Init runs once: the handler module is imported, as Lambda's init phase does, the clients a
first request makes are made (before any connection), and GET /health is invoked, which
calls nothing outside. Else each of 50 environments would spend some 60 ms of CPU on its own
first request, on a machine of two cores. Then one process is forked per event in EVENTS (a
JSON list): each environment starts from that state with memory of its own, takes an event
loop of its own and waits; when all are ready they invoke the handler together, once each.
RESULTS gets their responses (JSON, in the events' order; `{"error": ...}` for an environment
that failed).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.lambda_context import LambdaContext

if TYPE_CHECKING:
    from mangum import Mangum

EVENTS_DIR = Path(__file__).resolve().parent.parent / "events"
# However its invocation goes, an environment stops after this (the test then sees an error).
ENVIRONMENT_TIMEOUT_SECONDS = 60


def main(events_path: str, results_path: str) -> None:
    """Invoke the handler with each event at once, each in an environment of its own."""
    events: list[dict[str, Any]] = json.loads(Path(events_path).read_text())
    from chat_api import clients
    from chat_api.handler import handler

    clients.get_openai_client()
    clients.get_budget_store()
    warm_up = json.loads((EVENTS_DIR / "health.json").read_text())
    assert handler(warm_up, LambdaContext())["statusCode"] == 200
    # fork() copies only the calling thread: with no other thread, no lock is left held.
    assert threading.active_count() == 1, "init started a thread: forking would be unsafe"
    results = Path(results_path).with_suffix(".d")
    results.mkdir()
    go_read, go_write = os.pipe()
    children = []
    for index, event in enumerate(events):
        pid = os.fork()
        if pid == 0:
            os.close(go_write)
            _environment(handler, event, go_read, results / f"{index}.json")
        children.append(pid)
    os.close(go_read)
    os.write(go_write, b"x" * len(events))  # one byte each: go
    for pid in children:
        os.waitpid(pid, 0)
    responses = [_result_of(results / f"{index}.json") for index in range(len(events))]
    Path(results_path).write_text(json.dumps(responses))


def _environment(handler: Mangum, event: dict[str, Any], go: int, result: Path) -> None:
    """One environment: ready, then one invocation; it never returns."""
    signal.alarm(ENVIRONMENT_TIMEOUT_SECONDS)
    # DynamoDB and OpenAI have machines of their own; here the test's process plays both, and
    # 50 environments at once would starve it past the app's 3 s DynamoDB timeout on a loaded
    # machine: the environments yield the CPU to it.
    os.nice(10)
    try:
        # The inherited loop's epoll instance is shared with every sibling (fork shares kernel
        # objects): a loop of its own, which Mangum then finds.
        asyncio.set_event_loop(asyncio.new_event_loop())
        os.read(go, 1)
        outcome: dict[str, Any] = handler(event, LambdaContext())
    except BaseException:
        outcome = {"error": traceback.format_exc()}
    result.write_text(json.dumps(outcome))
    sys.stdout.flush()
    os._exit(0)


def _result_of(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"error": "the environment stopped without answering"}
    outcome: dict[str, Any] = json.loads(path.read_text())
    return outcome
