"""Streaming mode's server (`chat_api.serve`, what run.sh starts): uvicorn as the adapter needs it.

tests/test_run_script.py serves through it from the built artifact, behind a stand-in for the
adapter; here its settings, in-process.
"""

from __future__ import annotations

import importlib
import sys

import pytest

from tests.conftest import Configure, run_python

# aws-lambda-web-adapter src/lib.rs, `Adapter::new`: `pool_idle_timeout(Duration::from_secs(4))`.
ADAPTER_POOL_IDLE_SECONDS = 4


def test_serves_loopback_at_port_with_keep_alive_past_the_adapters_pool(
    monkeypatch: pytest.MonkeyPatch, configure: Configure
) -> None:
    configure(LAMBDA_WEB_ADAPTER="true")
    monkeypatch.setenv("PORT", "8123")
    monkeypatch.delitem(sys.modules, "chat_api.serve", raising=False)

    config = importlib.import_module("chat_api.serve").config()

    assert (config.host, config.port) == ("127.0.0.1", 8123)
    # Otherwise uvicorn may close a connection just as the adapter reuses it.
    assert config.timeout_keep_alive > ADAPTER_POOL_IDLE_SECONDS
    # What the artifact ships, also where uvloop or httptools is installed (a dev venv).
    assert (config.loop, config.http) == ("asyncio", "h11")
    assert not config.access_log


def test_imports_openai_before_the_app() -> None:
    # As chat_api.handler does, for the reason it gives (CPython 3.13.0's frame-stack chunks).
    code = (
        "import sys; import chat_api.serve; loaded = list(sys.modules); "
        "print(loaded.index('openai') < loaded.index('fastapi') < loaded.index('chat_api.main'))"
    )
    result = run_python(code, env={"OPENAI_API_KEY": "sk-test", "LAMBDA_WEB_ADAPTER": "true"})

    assert result.stdout.splitlines()[-1] == "True"
