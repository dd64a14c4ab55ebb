"""scripts/smoke.py against the app served by uvicorn on loopback, with the fake OpenAI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import TEST_OPENAI_KEY
from tests.fake_openai import FakeOpenAI, Reply, error_body

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "scripts" / "smoke.py"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


CLIENT_KEY = "smoke-client-key-0123456789"


@pytest.fixture(params=["no client keys", "client keys"])
def served_app(
    request: pytest.FixtureRequest, fake_openai: FakeOpenAI, tmp_path: Path
) -> Iterator[str]:
    """The app under uvicorn, talking to the fake OpenAI; yields its base URL.

    Without client keys (in keyless local mode, as `make dev` runs it) the app serves any
    local caller, so /chat answers without a key; with them it refuses a keyless request, as
    API Gateway does on AWS.
    """
    port = _free_port()
    environment = {
        "PATH": os.environ["PATH"],
        "OPENAI_API_KEY": TEST_OPENAI_KEY,
        "OPENAI_BASE_URL": fake_openai.base_url,
        "OPENAI_MAX_RETRIES": "0",
        "SESSIONS_DB_PATH": str(tmp_path / "sessions.sqlite3"),
    }
    if request.param == "client keys":
        environment["CLIENT_API_KEYS"] = CLIENT_KEY
    else:
        environment["ALLOW_KEYLESS_LOCALHOST"] = "true"
    command = [sys.executable, "-m", "uvicorn", "chat_api.main:create_app", "--factory"]
    server = subprocess.Popen(
        [*command, "--app-dir", "functions", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT,
        env=environment,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{url}/health", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def smoke(url: str, *flags: str, key: str = CLIENT_KEY) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SMOKE), url, *flags],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "SMOKE_API_KEY": key},
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("served_app", ["client keys"], indirect=True)
def test_smoke_passes_against_an_app_that_checks_keys(
    served_app: str, fake_openai: FakeOpenAI
) -> None:
    result = smoke(f"{served_app}/")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS POST /chat without a key: refused (HTTP 401)" in result.stdout
    assert len(fake_openai.requests) == 1  # only the call with the key cost anything


@pytest.mark.parametrize("served_app", ["client keys"], indirect=True)
def test_smoke_fails_with_a_wrong_key(served_app: str) -> None:
    result = smoke(served_app, key="not-the-key")

    assert result.returncode == 1
    assert "FAIL POST /chat with the key: HTTP 401" in result.stdout


@pytest.mark.parametrize("served_app", ["no client keys"], indirect=True)
def test_smoke_fails_when_chat_answers_without_a_key(served_app: str) -> None:
    result = smoke(served_app)

    assert result.returncode == 1
    assert "FAIL POST /chat without a key: expected 401/403, got HTTP 200" in result.stdout


@pytest.mark.parametrize("served_app", ["no client keys"], indirect=True)
def test_keyless_answers_pass_only_with_the_explicit_flag(served_app: str) -> None:
    result = smoke(served_app, "--allow-keyless")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "allowed by --allow-keyless" in result.stdout


@pytest.mark.parametrize("served_app", ["client keys"], indirect=True)
def test_smoke_fails_when_chat_fails(served_app: str, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(status=500, body=error_body("boom", "server_error")))

    result = smoke(served_app)

    assert result.returncode == 1
    assert "FAIL POST /chat with the key: HTTP 502" in result.stdout


def test_smoke_fails_when_nothing_answers() -> None:
    result = smoke(f"http://127.0.0.1:{_free_port()}")

    assert result.returncode == 1
    assert result.stdout.count("FAIL") == 3


def test_smoke_needs_the_key() -> None:
    result = smoke("http://127.0.0.1:9", key="")

    assert result.returncode == 2
    assert "SMOKE_API_KEY" in result.stderr
