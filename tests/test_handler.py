"""The real Lambda handler with real event shapes: REST v1, HTTP API v2, ALB, function URL."""

from __future__ import annotations

import base64
import importlib
import inspect
import json
import pkgutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

import chat_api.routes
from tests.conftest import Configure, Invoke, ReadLogs, body_of, load_event, run_python
from tests.fake_openai import FakeOpenAI, Reply, error_body
from tests.lambda_context import LambdaContext


@pytest.mark.parametrize(
    ("event_file", "greeting"),
    [
        ("chat.json", "Hello from sam local invoke"),
        ("chat-http-api.json", "Hello from an HTTP API"),
        ("chat-alb.json", "Hello from an Application Load Balancer"),
        ("chat-function-url.json", "Hello from a function URL"),
    ],
)
def test_chat_answers_through_each_event_kind(
    invoke: Invoke, event_file: str, greeting: str
) -> None:
    response = invoke(load_event(event_file))

    assert response["statusCode"] == 200
    assert body_of(response)["response"] == f"Echo: {greeting}"


def test_two_invocations_in_a_row_reuse_the_container(
    invoke: Invoke, fake_openai: FakeOpenAI
) -> None:
    first = invoke(load_event("chat.json", body=json.dumps({"message": "one"})))
    second = invoke(load_event("chat.json", body=json.dumps({"message": "two"})))

    assert body_of(first)["response"] == "Echo: one"
    assert body_of(second)["response"] == "Echo: two"
    assert len(fake_openai.requests) == 2


def test_base64_encoded_body_is_decoded(invoke: Invoke) -> None:
    body = json.dumps({"message": "encoded"}).encode()
    event = load_event(
        "chat-http-api.json", body=base64.b64encode(body).decode(), isBase64Encoded=True
    )

    assert body_of(invoke(event))["response"] == "Echo: encoded"


def test_health_event_does_not_call_openai(invoke: Invoke, fake_openai: FakeOpenAI) -> None:
    response = invoke(load_event("health.json"))

    assert response["statusCode"] == 200
    assert body_of(response) == {"status": "ok"}
    assert fake_openai.requests == []


def test_docs_on_the_stage_url_load_the_schema_from_the_stage(invoke: Invoke) -> None:
    response = invoke(load_event("docs.json"))

    assert response["statusCode"] == 200
    assert "'/Prod/openapi.json'" in response["body"]


def test_openapi_on_the_stage_url_names_the_stage_as_server(invoke: Invoke) -> None:
    event = load_event("docs.json", path="/openapi.json", resource="/openapi.json")
    event["requestContext"] = {**event["requestContext"], "path": "/Prod/openapi.json"}

    response = invoke(event)

    assert response["statusCode"] == 200
    assert body_of(response)["servers"] == [{"url": "/Prod"}]


def test_custom_domain_without_stage_prefix_serves_docs_at_the_root(invoke: Invoke) -> None:
    event = load_event("docs.json")
    event["requestContext"] = {**event["requestContext"], "path": "/docs"}

    response = invoke(event)

    assert "'/openapi.json'" in response["body"]


def test_bad_json_through_the_handler_is_400(invoke: Invoke) -> None:
    response = invoke(load_event("chat.json", body="{not json"))

    assert response["statusCode"] == 400
    assert body_of(response) == {"error": "Request body is not valid JSON."}


def test_unknown_route_through_the_handler_is_json_404(invoke: Invoke) -> None:
    event = load_event("chat-http-api.json", rawPath="/missing")
    event["requestContext"] = {
        **event["requestContext"],
        "http": {**event["requestContext"]["http"], "path": "/missing"},
    }

    response = invoke(event)

    assert response["statusCode"] == 404
    assert body_of(response)["error"] == "No route for POST /missing."


def test_upstream_rate_limit_through_the_handler_keeps_retry_after(
    invoke: Invoke, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(
        Reply(status=429, body=error_body("slow down", "requests"), headers={"retry-after": "3"})
    )

    response = invoke(load_event("chat.json"))

    assert response["statusCode"] == 429
    assert response["headers"]["retry-after"] == "3"


def test_handler_import_raises_no_deprecation_warning() -> None:
    result = run_python("import chat_api.handler", "-W", "error", check=False)

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("module", ["chat_api.handler", "chat_api.serve"])
def test_import_turns_the_garbage_collector_back_on_with_init_frozen(module: str) -> None:
    # Both modes' entry points (Mangum's handler, streaming mode's uvicorn server) keep the
    # cyclic GC off while init runs: left off, a warm container would never collect a cycle.
    code = f"import gc, {module}; print(gc.isenabled(), gc.get_freeze_count() > 0)"
    result = run_python(code)

    assert result.stdout.split() == ["True", "True"]


def test_log_line_carries_the_gateway_and_lambda_request_ids(
    invoke: Invoke, lambda_context: LambdaContext, request_logs: ReadLogs
) -> None:
    event = load_event("chat.json")

    invoke(event)

    [line] = request_logs()
    assert line["request_id"] == event["requestContext"]["requestId"]
    assert line["lambda_request_id"] == lambda_context.aws_request_id


def test_lambda_remaining_time_bounds_the_upstream_call(
    invoke: Invoke, lambda_context: LambdaContext, fake_openai: FakeOpenAI, configure: Configure
) -> None:
    # 5 s left in the invocation, 3 s margin: the service answers after about 2 s, though an
    # attempt may take 20 s and OpenAI would answer after 10. The margin is the slack a loaded
    # machine gets.
    configure(OPENAI_TIMEOUT_SECONDS="20", DEADLINE_MARGIN_SECONDS="3")
    lambda_context.remaining_ms = 5_000
    fake_openai.enqueue(Reply(delay=10.0))
    started = time.monotonic()

    response = invoke(load_event("chat.json"))

    assert response["statusCode"] == 504
    assert time.monotonic() - started < 5  # before Lambda would have stopped the invocation


def test_first_chat_in_a_fresh_container_imports_no_aws_sdk(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    # A cold start pays for every import: with the key in the environment, boto3 (~100 ms)
    # has no reason to load, not at import and not while serving.
    code = (
        "import json, sys; from chat_api.handler import handler; "
        "from chat_api.clients import get_openai_client; "
        "created_at_import = get_openai_client.cache_info().currsize; "
        "from tests.lambda_context import LambdaContext; "
        "event = json.load(open('events/chat.json')); "
        "status = handler(event, LambdaContext())['statusCode']; "
        "print(json.dumps([created_at_import, status, 'boto3' in sys.modules]))"
    )
    result = run_python(
        code,
        env={
            "OPENAI_API_KEY": "sk-test",
            "OPENAI_BASE_URL": fake_openai.base_url,
            "SESSIONS_DB_PATH": str(tmp_path / "sessions.sqlite3"),
        },
    )

    # The request's log line comes first; the probe's verdict is the last line.
    assert json.loads(result.stdout.splitlines()[-1]) == [0, 200, False]


def test_the_handler_imports_openai_before_the_app() -> None:
    # Beneath chat_api.main, openai's classes were built across a frame-stack chunk boundary,
    # which CPython 3.13.0 maps and unmaps at every crossing (handler.py, README).
    code = (
        "import sys; import chat_api.handler; loaded = list(sys.modules); "
        "print(loaded.index('openai') < loaded.index('fastapi') < loaded.index('chat_api.main'))"
    )
    result = run_python(code, env={"OPENAI_API_KEY": "sk-test"})

    assert result.stdout.splitlines()[-1] == "True"


def _dependencies(dependant: Dependant) -> Iterator[Dependant]:
    for dependency in dependant.dependencies:
        yield dependency
        yield from _dependencies(dependency)


def test_route_dependencies_run_on_the_event_loop() -> None:
    # FastAPI runs a plain `def` dependency in a worker thread: a thread hop on every request,
    # which bench/ measured as most of the service's overhead over the bare OpenAI call.
    modules = [
        importlib.import_module(f"chat_api.routes.{module.name}")
        for module in pkgutil.iter_modules(chat_api.routes.__path__)
    ]
    routes = [route for module in modules for route in module.router.routes]
    routes = [route for route in routes if isinstance(route, APIRoute)]
    dependencies = [dep for route in routes for dep in _dependencies(route.dependant)]

    assert dependencies
    assert [dep.call for dep in dependencies if not inspect.iscoroutinefunction(dep.call)] == []
