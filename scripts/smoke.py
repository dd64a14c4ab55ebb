"""Smoke-test a running chat API: /health answers, /chat answers with the key, and not without.

Usage: SMOKE_API_KEY=<key> python3 scripts/smoke.py URL [--allow-keyless]
(`make smoke URL=... KEY=...`). URL is the API's base, such as the stack's ApiUrl output.
The key comes from the environment, not the command line, where any process could read it.
`--allow-keyless` reports a /chat answered without a key instead of failing on it: for a
server that checks no keys, such as the app under uvicorn. Standard library only, so it runs
anywhere Python does (a CI job without the project's venv).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

TIMEOUT_SECONDS = 30
REFUSED = {401, 403}


class CheckFailed(Exception):
    """A check's expectation was not met."""


def request(url: str, body: dict[str, Any] | None = None, key: str = "") -> tuple[int, Any]:
    """Status and parsed JSON body of a GET (no body) or a JSON POST."""
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if key:
        headers["x-api-key"] = key
    call = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310 (http(s) checked)
    try:
        with urllib.request.urlopen(call, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    except OSError as error:  # refused, unresolvable, timed out
        raise CheckFailed(f"{call.get_method()} {url}: {error}") from error
    try:
        return status, json.loads(raw)
    except json.JSONDecodeError:
        return status, raw.decode(errors="replace")[:200]


def check_health(base: str) -> str:
    status, body = request(f"{base}/health")
    if status != 200 or body != {"status": "ok"}:
        raise CheckFailed(f"GET /health: HTTP {status} {body!r}")
    return "GET /health: ok"


def check_chat(base: str, key: str) -> str:
    status, body = request(f"{base}/chat", {"message": "Smoke test: say hello."}, key)
    if status != 200 or not isinstance(body, dict) or not body.get("response"):
        raise CheckFailed(f"POST /chat with the key: HTTP {status} {body!r}")
    return f"POST /chat with the key: answered by {body.get('model')}"


def check_keyless_refused(base: str, allow_keyless: bool) -> str:
    status, body = request(f"{base}/chat", {"message": "Smoke test without a key."})
    if status in REFUSED:
        return f"POST /chat without a key: refused (HTTP {status})"
    if allow_keyless and status == 200:
        return "POST /chat without a key: answered, allowed by --allow-keyless"
    raise CheckFailed(f"POST /chat without a key: expected 401/403, got HTTP {status} {body!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="base URL of the API, e.g. https://<id>.execute-api.../Prod/")
    parser.add_argument(
        "--allow-keyless",
        action="store_true",
        help="do not fail when /chat answers without a key (a server that checks no keys)",
    )
    arguments = parser.parse_args(argv)
    base = arguments.url.rstrip("/")
    if not base.startswith(("https://", "http://")):
        parser.error("URL must start with https:// or http://")
    key = os.environ.get("SMOKE_API_KEY", "")
    if not key:
        parser.error("set SMOKE_API_KEY to the API key value")

    checks: list[Callable[[], str]] = [
        lambda: check_health(base),
        lambda: check_chat(base, key),
        lambda: check_keyless_refused(base, arguments.allow_keyless),
    ]
    failed = False
    for check in checks:
        try:
            print(f"PASS {check()}")
        except CheckFailed as error:
            print(f"FAIL {error}")
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
