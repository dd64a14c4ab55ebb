"""Shared fixtures: a clean environment per test, the fake OpenAI server, AWS through moto."""

from __future__ import annotations

import asyncio
import importlib
import io
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import boto3
import httpx2
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from mangum import Mangum
from moto import mock_aws
from starlette.types import ASGIApp

from chat_api.clients import close_openai_client, get_session_store, reset_clients
from chat_api.config import Settings, get_settings
from chat_api.deps import get_clock
from chat_api.main import create_app
from chat_api.request_log import get_logger, metric_directive
from chat_api.store.base import SessionStore
from chat_api.store.dynamodb import PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE
from tests.fake_openai import FakeOpenAI
from tests.lambda_context import LambdaContext

# Fixtures defined beside their helpers: `service` (the SDK against uvicorn or Lambda).
pytest_plugins = ["tests.sdk"]

ROOT = Path(__file__).resolve().parent.parent
EVENTS_DIR = ROOT / "events"
FUNCTIONS_DIR = ROOT / "functions"
TEST_OPENAI_KEY = "sk-test-canary-0123456789abcdef"
# The client key the sample events carry; tests configure it as the one accepted key.
CLIENT_API_KEY = "EXAMPLE-not-a-real-api-key-0000000000000"
SESSIONS_TABLE = "chat-sessions-test"
SECRET_NAME = "chat-api/openai"
STORES = ["sqlite", "dynamodb"]

Configure = Callable[..., None]
AppClient = Callable[[], TestClient]
ReadLogs = Callable[[], list[dict[str, Any]]]
Wrapper = Callable[[ASGIApp], ASGIApp]


class Serve(Protocol):
    """Start the app under uvicorn, optionally wrapped in another ASGI app; its URL."""

    def __call__(self, around: Wrapper | None = None) -> str: ...


LambdaEvent = dict[str, Any]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests of the template as SAM translates it need the SAM venv that `make build` makes:
    they count as artifact tests, so a bare `pytest` on a fresh clone passes without it."""
    for item in items:
        if "translated" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.artifact)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say how to run the artifact tests when pyproject's default `-m "not artifact"` left
    them out (next to the count of deselected tests, and under -q too)."""
    deselected = terminalreporter.stats.get("deselected", [])
    if any(item.get_closest_marker("artifact") for item in deselected):
        terminalreporter.write_line(
            "artifact tests deselected (they need what `make build` makes): `make test` runs "
            "them, or `make build` then `pytest -m artifact`"
        )


def clear_caches() -> None:
    """Forget settings and clients, so the next request reads the environment again."""
    reset_clients()
    for factory in (get_settings, get_logger, metric_directive):
        factory.cache_clear()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No variable of the developer's shell or `.env` leaks in; AWS credentials are dummies.

    Sessions go to an SQLite file of the test's own, never to the project's `.data/`.
    """
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("SESSIONS_DB_PATH", str(tmp_path / "sessions.sqlite3"))
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    clear_caches()
    yield
    clear_caches()


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch) -> Configure:
    """Set environment variables (None removes one) and drop cached settings and clients."""

    def apply(**variables: str | None) -> None:
        for name, value in variables.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        clear_caches()

    return apply


@pytest.fixture
def fake_openai(configure: Configure) -> Iterator[FakeOpenAI]:
    """The loopback OpenAI server, with the service pointed at it and test keys set."""
    server = FakeOpenAI().start()
    configure(
        OPENAI_BASE_URL=server.base_url,
        OPENAI_API_KEY=TEST_OPENAI_KEY,
        CLIENT_API_KEYS=CLIENT_API_KEY,
        OPENAI_TIMEOUT_SECONDS="5",
        OPENAI_MAX_RETRIES="0",
    )
    yield server
    server.stop()


@pytest.fixture
def client(fake_openai: FakeOpenAI) -> Iterator[TestClient]:
    """The app over HTTP with the client key; one event loop for the test (a warm container)."""
    with authorized_client() as test_client:
        yield test_client


@pytest.fixture
def app_client() -> AppClient:
    """Build a fresh app from the current environment (for tests that configure it first)."""
    return authorized_client


def authorized_client(app: FastAPI | None = None) -> TestClient:
    """A client of `app` (else a fresh one) that sends the test client key with every request."""
    return TestClient(
        app or create_app(), raise_server_exceptions=False, headers={"x-api-key": CLIENT_API_KEY}
    )


class Clock:
    """A clock that stands still until a test moves it."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    """The time the app sees, moved by the test."""
    return Clock()


def create_sessions_table(name: str = SESSIONS_TABLE) -> None:
    """The sessions table as template.yaml declares it (keys and TTL), in moto."""
    client = boto3.client("dynamodb")
    client.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
            {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": PARTITION_KEY, "AttributeType": "S"},
            {"AttributeName": SORT_KEY, "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    client.update_time_to_live(
        TableName=name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
    )


class Secrets:
    """Secrets Manager in moto, and the service pointed at a secret in it."""

    def __init__(self, configure: Configure) -> None:
        self.client = boto3.client("secretsmanager")
        self._configure = configure

    def serve_key_from(self, name: str = SECRET_NAME) -> None:
        """Configure the service as on AWS: no OpenAI key in the environment, only the secret."""
        self._configure(OPENAI_API_KEY=None, OPENAI_API_KEY_SECRET_ID=name)

    def create(self, value: str | dict[str, Any], name: str = SECRET_NAME) -> None:
        """Store the secret `name`; a dict is stored as JSON, as the template's secret is."""
        self.client.create_secret(Name=name, SecretString=_secret_string(value))

    def rotate(self, value: str | dict[str, Any], name: str = SECRET_NAME) -> None:
        """Give the secret a new value, as a rotation does."""
        self.client.put_secret_value(SecretId=name, SecretString=_secret_string(value))


def _secret_string(value: str | dict[str, Any]) -> str:
    return value if isinstance(value, str) else json.dumps(value)


@pytest.fixture
def secrets(configure: Configure) -> Iterator[Secrets]:
    """Secrets Manager in moto, empty until the test creates a secret."""
    with mock_aws():
        yield Secrets(configure)


@pytest.fixture
def sessions_table() -> Iterator[str]:
    """The sessions table in moto; its name."""
    with mock_aws():
        create_sessions_table()
        yield SESSIONS_TABLE


@pytest.fixture(params=STORES)
def store_kind(request: pytest.FixtureRequest, configure: Configure) -> str:
    """Run the test once per store: SQLite in a temporary file, then DynamoDB in moto."""
    if request.param == "dynamodb":
        configure(SESSIONS_TABLE=request.getfixturevalue("sessions_table"))
    return str(request.param)


@pytest.fixture
def store(store_kind: str) -> SessionStore:
    """The configured session store, as the app gets it."""
    return get_session_store()


@pytest.fixture
def api(fake_openai: FakeOpenAI, store_kind: str, clock: Clock) -> Iterator[TestClient]:
    """The app on each store, with the fake OpenAI server and a clock the test controls."""
    app = create_app()
    app.dependency_overrides[get_clock] = lambda: clock
    with authorized_client(app) as test_client:
        yield test_client


@pytest.fixture
def request_logs() -> Iterator[ReadLogs]:
    """The service's JSON log lines written during the test, parsed."""
    buffer = io.StringIO()
    handler = get_logger().registered_handler
    assert isinstance(handler, logging.StreamHandler)
    previous = handler.setStream(buffer)
    yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    handler.setStream(previous)


@pytest.fixture
def lambda_context() -> LambdaContext:
    """A Lambda context with the full time budget left."""
    return LambdaContext()


def run_python(
    code: str, *flags: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter, as a new container would (from the repository root,
    the app and `tests` importable, no variable of this process's environment)."""
    return subprocess.run(
        [sys.executable, *flags, "-c", code],
        capture_output=True,
        text=True,
        check=check,
        cwd=ROOT,
        env={"PYTHONPATH": f"{FUNCTIONS_DIR}:{ROOT}", **(env or {})},
    )


def load_event(name: str, **overrides: Any) -> dict[str, Any]:
    """A sample event from events/, with top-level fields replaced (e.g. body)."""
    event: dict[str, Any] = json.loads((EVENTS_DIR / name).read_text())
    event.update(overrides)
    return event


@pytest.fixture
def serve(fake_openai: FakeOpenAI) -> Iterator[Serve]:
    """Start the app under uvicorn on a loopback port (from the current environment); its URL."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(around: Wrapper | None = None) -> str:
        # A factory: the app is built in the server's thread, from the environment of then.
        factory = (lambda: around(create_app())) if around else create_app
        config = uvicorn.Config(
            factory, factory=True, host="127.0.0.1", port=0, log_level="warning"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.monotonic() + 5
        while not server.started:
            assert thread.is_alive(), "uvicorn stopped while starting"
            assert time.monotonic() < deadline, "uvicorn did not start in time"
            time.sleep(0.005)
        port = server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=5)


@pytest.fixture
def import_handler(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], ModuleType]]:
    """Import the handler module afresh, as a new container would; close its loop after."""
    monkeypatch.delitem(sys.modules, "chat_api.handler", raising=False)
    yield lambda: importlib.import_module("chat_api.handler")
    asyncio.get_event_loop_policy().get_event_loop().close()
    asyncio.set_event_loop(None)


@pytest.fixture
def http(serve: Serve) -> Iterator[httpx2.Client]:
    """A plain HTTP client of the app under uvicorn, sending the client key."""
    with httpx2.Client(
        base_url=serve(), headers={"x-api-key": CLIENT_API_KEY}, timeout=10
    ) as client:
        yield client


class LambdaRuntime:
    """The real handler module, imported as Lambda would, invoked on its own event loop.

    Calls run on one worker thread that owns the handler's loop, as the Lambda runtime's one
    thread does; so a test may invoke from inside `asyncio.run` (an async SDK client) too.
    """

    def __init__(self, context: LambdaContext) -> None:
        sys.modules.pop("chat_api.handler", None)
        module = importlib.import_module("chat_api.handler")
        self._handler: Mangum = module.handler
        self._context = context
        self.loop = asyncio.get_event_loop_policy().get_event_loop()
        # The import made this loop current for the main thread; only the worker runs it.
        asyncio.set_event_loop(None)
        self._worker = ThreadPoolExecutor(
            max_workers=1, initializer=asyncio.set_event_loop, initargs=(self.loop,)
        )

    def invoke(self, event: LambdaEvent) -> dict[str, Any]:
        """Invoke the handler with `event` and return its response dict."""
        return self._worker.submit(self._handler, event, self._context).result()

    async def invoke_async(self, event: LambdaEvent) -> dict[str, Any]:
        """`invoke`, awaitable from another event loop."""
        return await asyncio.wrap_future(self._worker.submit(self._handler, event, self._context))

    def close(self) -> None:
        """Close the OpenAI client and the loop, like a container's end."""
        self._worker.submit(self.loop.run_until_complete, close_openai_client()).result()
        # Generators the SDK left open are closed on the loop, as `asyncio.run` does at its end.
        self._worker.submit(self.loop.run_until_complete, self.loop.shutdown_asyncgens()).result()
        self._worker.shutdown()
        self.loop.close()


@pytest.fixture
def lambda_runtime(
    fake_openai: FakeOpenAI, lambda_context: LambdaContext
) -> Iterator[LambdaRuntime]:
    """The Lambda handler, fresh from the configured environment."""
    runtime = LambdaRuntime(lambda_context)
    yield runtime
    runtime.close()


Invoke = Callable[[LambdaEvent], dict[str, Any]]


@pytest.fixture
def invoke(lambda_runtime: LambdaRuntime) -> Invoke:
    """The real handler, invoked as Lambda would."""
    return lambda_runtime.invoke


def body_of(response: dict[str, Any]) -> Any:
    """The JSON body of a Lambda proxy response."""
    return json.loads(response["body"])


def events_of(response: httpx2.Response) -> list[httpx2.ServerSentEvent]:
    """The response parsed as SSE by httpx2's parser (which also checks the content type)."""
    return list(httpx2.EventSource(response))
