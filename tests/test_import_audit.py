"""The import audit: what the build prunes, the function never needs.

An artifact built by `scripts/build_function.py` for this machine's CPU (the deployed one holds
arm64 wheels) serves every route in a fresh interpreter with only the artifact on sys.path,
as in /var/task, talking to the fake OpenAI. The routes must answer as they do from a full
install; no pruned module may be loaded or looked for (but FastAPI's probe for pydantic.v1);
and no loaded module may import a pruned one outside the places named here, each with the
reason it never runs.
"""

from __future__ import annotations

import ast
import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scripts import build_function

from chat_api.main import create_app
from tests.conftest import CLIENT_API_KEY, TEST_OPENAI_KEY, load_event
from tests.fake_openai import FakeOpenAI, Reply, error_body

ROOT = Path(__file__).resolve().parents[1]
CHILD = Path(__file__).with_name("artifact_child.py")
APP_SOURCE = ROOT / "functions" / "chat_api"

# Where a loaded module names a pruned one, and why that import never runs.
KNOWN_IMPORTS = {
    ("fastapi._compat.shared", "pydantic.v1"): "in try/except ImportError: no v1, no v1 model",
    ("pydantic._internal._generate_schema", "pydantic.v1"): (
        "only for a type with `__get_validators__`; the routes built every schema without one"
    ),
    ("aws_lambda_powertools.shared.functions", "aws_lambda_powertools.event_handler"): (
        "only to log a pydantic model as an event (inject_lambda_context), which the app never"
    ),
    ("openai._client", "openai.resources.beta"): (
        "the client's `beta` property, which the app never reads"
    ),
}


def rest_event(method: str, path: str, body: Any = None) -> dict[str, Any]:
    """A REST API event (stage Prod, the sample key) for any route."""
    event = load_event("chat.json", httpMethod=method, path=path, resource=path)
    event["requestContext"].update(httpMethod=method, path=f"/Prod{path}", resourcePath=path)
    event["body"] = body if body is None or isinstance(body, str) else json.dumps(body)
    return event


def _with_headers(event: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    event["headers"] = {**event["headers"], **headers}
    event["multiValueHeaders"] = {
        **event.get("multiValueHeaders", {}),
        **{name: [value] for name, value in headers.items()},
    }
    return event


# Every route, the error paths and each event kind, in order, with the status each must get.
REQUESTS = [
    ("OpenAI's 429 (enqueued)", rest_event("POST", "/chat", {"message": "rate me"}), 429),
    ("health", load_event("health.json"), 200),
    ("docs", load_event("docs.json"), 200),
    ("OpenAPI schema", rest_event("GET", "/openapi.json"), 200),
    ("chat, new session", load_event("chat.json"), 200),
    (
        "chat, continued",
        rest_event("POST", "/chat", {"message": "again", "session_id": "{session_id}"}),
        200,
    ),
    ("chat, streamed", load_event("chat-stream.json"), 200),
    (
        "chat, client history",
        rest_event(
            "POST",
            "/chat",
            {
                "message": "hi",
                "history": [
                    {"role": "user", "content": "a"},
                    {"role": "assistant", "content": "b"},
                ],
            },
        ),
        200,
    ),
    ("session, read", rest_event("GET", "/sessions/{session_id}"), 200),
    ("session, deleted", rest_event("DELETE", "/sessions/{session_id}"), 204),
    ("session, gone", rest_event("GET", "/sessions/{session_id}"), 404),
    ("v1 chat completions", load_event("chat-completions.json"), 200),
    ("v1 chat completions, streamed", load_event("chat-completions-stream.json"), 200),
    ("v1 models", load_event("models.json"), 200),
    ("v1 model", rest_event("GET", "/v1/models/gpt-4o-mini"), 200),
    (
        "v1 embeddings",
        rest_event("POST", "/v1/embeddings", {"model": "text-embedding-3-small", "input": "hi"}),
        200,
    ),
    (
        "v1 responses",
        rest_event("POST", "/v1/responses", {"model": "gpt-4o-mini", "input": "hi"}),
        200,
    ),
    (
        "v1 responses, streamed",
        rest_event(
            "POST", "/v1/responses", {"model": "gpt-4o-mini", "input": "hi", "stream": True}
        ),
        200,
    ),
    (
        "v1 chat completions, streamed with an Idempotency-Key",
        _with_headers(load_event("chat-completions-stream.json"), {"Idempotency-Key": "audit-1"}),
        200,
    ),
    ("usage", rest_event("GET", "/usage"), 200),
    ("chat page", rest_event("GET", "/"), 200),
    ("unknown route", rest_event("GET", "/nowhere"), 404),
    ("body not JSON", rest_event("POST", "/chat", "{"), 400),
    ("body of the wrong shape", rest_event("POST", "/chat", {"message": 5}), 400),
    ("HTTP API v2", load_event("chat-http-api.json"), 200),
    ("ALB", load_event("chat-alb.json"), 200),
    ("function URL", load_event("chat-function-url.json"), 200),
    ("function URL, no key", load_event("chat-function-url.json", headers={}), 401),
]


@pytest.fixture(scope="module")
def host_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The artifact, built by the build script for this machine's CPU."""
    artifact = tmp_path_factory.mktemp("artifact")
    build_function.build(artifact, f"manylinux2014_{platform.machine()}")
    return artifact


@pytest.fixture(scope="module")
def report(host_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What tests/artifact_child.py saw, serving `REQUESTS` from the artifact."""
    scratch = tmp_path_factory.mktemp("audit")
    server = FakeOpenAI().start()
    server.enqueue(Reply(status=429, body=error_body("Slow down", "rate_limit_exceeded")))
    environment = {
        "PATH": os.environ["PATH"],
        "OPENAI_API_KEY": TEST_OPENAI_KEY,
        "OPENAI_BASE_URL": server.base_url,
        "OPENAI_MAX_RETRIES": "0",
        "CLIENT_API_KEYS": CLIENT_API_KEY,
        "SESSIONS_DB_PATH": str(scratch / "sessions.sqlite3"),
    }
    try:
        served = subprocess.run(
            [sys.executable, "-I", "-S", "-B", CHILD, host_artifact, scratch / "report.json"],
            input=json.dumps([event for _, event, _ in REQUESTS]),
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.stop()
    assert served.returncode == 0, served.stderr
    report: dict[str, Any] = json.loads((scratch / "report.json").read_text())
    return report


def _imports_outside_type_checking(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, but those under `if TYPE_CHECKING:`."""
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            pending.extend(node.orelse)
        else:
            pending.extend(ast.iter_child_nodes(node))


def _imported_names(module: str, file: Path) -> set[str]:
    """The modules `file` (module `module`) may import, with each `from X import y` as X.y."""
    package = module if file.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in _imports_outside_type_checking(ast.parse(file.read_bytes())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            base = f"{parent}.{base}" if base else parent
        names.add(base)
        names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _pruned_package(module: str) -> str | None:
    """The entry of `UNUSED_MODULES` that `module` is or lies inside, if any."""
    for unused in build_function.UNUSED_MODULES:
        if module == unused or module.startswith(f"{unused}."):
            return unused
    return None


def test_every_route_answers_from_the_pruned_artifact(report: dict[str, Any]) -> None:
    labels = [label for label, _, _ in REQUESTS]
    statuses = [response["status"] for response in report["responses"]]

    assert list(zip(labels, statuses, strict=True)) == [
        (label, status) for label, _, status in REQUESTS
    ]
    chat = report["responses"][4]
    assert json.loads(chat["body"])["response"] == "Echo: Hello from sam local invoke"


def test_the_artifacts_openapi_schema_is_the_apps(report: dict[str, Any]) -> None:
    # The artifact builds FastAPI's OpenAPI models on first use (SOURCE_PATCHES).
    label, _, _ = REQUESTS[3]
    assert label == "OpenAPI schema"
    served = json.loads(report["responses"][3]["body"])

    # Served through the stage (/Prod), which the app names as its server.
    assert served.pop("servers") == [{"url": "/Prod"}]
    assert served == create_app().openapi()


def test_python_dotenv_is_never_imported_on_lambda(report: dict[str, Any]) -> None:
    # The function reads no .env: pydantic-settings imports it only to read one (SOURCE_PATCHES).
    assert [name for name in report["loaded"] if name.split(".")[0] == "dotenv"] == []


def test_what_only_an_unused_feature_needs_is_never_imported_on_lambda(
    report: dict[str, Any],
) -> None:
    # Powertools' Metrics, Tracer, the Logger's JMESPath; Starlette's debug page (SOURCE_PATCHES)
    unused = {"aws_lambda_powertools.metrics", "aws_lambda_powertools.tracing", "jmespath", "html"}
    loaded = {name for name in report["loaded"] if name.startswith(tuple(unused))}
    assert loaded == set()


def test_a_cold_start_imports_no_openapi_model_nor_security_scheme(
    report: dict[str, Any],
) -> None:
    # Only /docs, /openapi.json and a security scheme need them (SOURCE_PATCHES).
    label, _, _ = REQUESTS[0]
    assert label.startswith("OpenAI's 429")
    cold = report["loaded_by_the_first"]
    assert "chat_api.routes.chat" in cold
    assert [
        name for name in cold if name.startswith(("fastapi.openapi.models", "fastapi.security"))
    ] == []
    # The OpenAPI schema request (REQUESTS[3]) imports the models.
    assert "fastapi.openapi.models" in report["loaded"]


def test_the_modules_come_from_the_artifact(report: dict[str, Any], host_artifact: Path) -> None:
    for package in ["chat_api", "fastapi", "openai", "pydantic", "aws_lambda_powertools"]:
        assert Path(report["loaded"][package]).is_relative_to(host_artifact), package


def test_no_pruned_module_is_loaded_and_only_fastapis_probe_looks_for_one(
    report: dict[str, Any],
) -> None:
    assert [name for name in report["loaded"] if _pruned_package(name)] == []
    looked_for = {(name, asker) for name, asker in report["looked_for"] if _pruned_package(name)}
    assert looked_for == {("pydantic.v1", "fastapi._compat.shared")}


def test_loaded_modules_import_pruned_ones_only_where_known(
    report: dict[str, Any], host_artifact: Path
) -> None:
    found = set()
    for module, file in report["loaded"].items():
        if not Path(file).is_relative_to(host_artifact) or not file.endswith(".py"):
            continue  # the standard library, or compiled extensions
        for name in _imported_names(module, Path(file)):
            if pruned := _pruned_package(name):
                found.add((module, pruned))

    assert found == set(KNOWN_IMPORTS)


def test_the_app_never_reads_the_sdks_beta_apis() -> None:
    # KNOWN_IMPORTS's reason for openai._client: `client.beta` would import a pruned module.
    for source in APP_SOURCE.rglob("*.py"):
        assert not re.search(r"\.beta\b", source.read_text()), source


SECURED_APP = """
import asyncio, json, sys
sys.path.insert(0, sys.argv[1])
from fastapi import FastAPI, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes

app = FastAPI()


def user(scopes: SecurityScopes, token: HTTPAuthorizationCredentials = Security(HTTPBearer())):
    return {"scopes": scopes.scopes, "token": token.credentials}


@app.get("/me")
def me(found: dict = Security(user, scopes=["read"])):
    return found


async def get_me(headers):
    scope = {"type": "http", "method": "GET", "path": "/me", "headers": headers,
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1)}
    sent = []

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    return [sent[0]["status"], json.loads(sent[1]["body"])]


print(json.dumps([
    asyncio.run(get_me([(b"authorization", b"Bearer t0k3n")])),
    asyncio.run(get_me([]))[0],
    app.openapi()["components"]["securitySchemes"],
]))
"""


def test_the_patched_fastapi_still_serves_security_schemes(host_artifact: Path) -> None:
    # SOURCE_PATCHES check for them only once something has imported fastapi.security.
    served = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", SECURED_APP, host_artifact],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert served.returncode == 0, served.stderr

    authorized, unauthorized, schemes = json.loads(served.stdout)
    assert authorized == [200, {"scopes": ["read"], "token": "t0k3n"}]
    assert unauthorized == 401
    assert schemes == {"HTTPBearer": {"type": "http", "scheme": "bearer"}}
