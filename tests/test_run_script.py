"""The artifact's run.sh, started as the AWS Lambda Web Adapter starts it, streams.

The adapter's /opt/bootstrap runs the handler script with the function's environment (PORT,
AWS_LWA_*, LAMBDA_TASK_ROOT), waits for the readiness path, then relays each invocation with
its context headers; here the test plays the adapter. `make build` leaves arm64 wheels, whose
compiled modules cannot load on another CPU: the server runs a twin built by the same script
for this machine, with the built artifact's run.sh and app package laid over it, read-only as
Lambda's /var/task is.
"""

from __future__ import annotations

import platform
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from tests.adapter_headers import adapter_headers
from tests.conftest import TEST_OPENAI_KEY
from tests.fake_openai import FakeOpenAI, Reply, stream_of

ROOT = Path(__file__).resolve().parents[1]
ARTIFACT = ROOT / ".aws-sam" / "build" / "ChatFunction"
LAMBDA_PLATFORM = "manylinux2014_aarch64"
READY_WITHIN_SECONDS = 20
CHUNK_DELAY = 0.5


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _files(tree: Path) -> list[str]:
    return sorted(f"{p.relative_to(tree)} {p.stat().st_size}" for p in tree.rglob("*"))


def _set_writable(tree: Path, writable: bool) -> None:
    for path in [tree, *tree.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode | stat.S_IWUSR if writable else mode & ~0o222)


@pytest.fixture(scope="module")
def task_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The built artifact's run.sh and app over wheels for this machine, read-only."""
    if not (ARTIFACT / "run.sh").is_file():
        pytest.fail(f"No run.sh in {ARTIFACT}: run `make build` (make test does) first.")
    root = tmp_path_factory.mktemp("task") / "var-task"
    host_platform = f"manylinux2014_{platform.machine()}"
    if host_platform == LAMBDA_PLATFORM:
        shutil.copytree(ARTIFACT, root)
    else:
        subprocess.run(
            [sys.executable, "scripts/build_function.py", "--platform", host_platform, root],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        shutil.rmtree(root / "chat_api")
        shutil.copytree(ARTIFACT / "chat_api", root / "chat_api")
        shutil.copy2(ARTIFACT / "run.sh", root / "run.sh")
    _set_writable(root, writable=False)
    (root.parent / "files-as-built").write_text("\n".join(_files(root)))
    yield root
    _set_writable(root, writable=True)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server(
    task_root: Path, upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """run.sh under the environment the template gives it; its URL once /health answers."""
    scratch = tmp_path_factory.mktemp("lambda-tmp")
    # Lambda's python3 is the runtime's alone: this venv's base interpreter, not the venv.
    bin_dir = scratch / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(Path(sys.base_prefix) / "bin" / "python3.13")
    port = _free_port()
    environment = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "LAMBDA_TASK_ROOT": str(task_root),
        "PORT": str(port),
        "AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap",
        "AWS_LWA_INVOKE_MODE": "response_stream",
        "AWS_LWA_READINESS_CHECK_PATH": "/health",
        "GATEWAY_TIMEOUT_SECONDS": "300",
        "OPENAI_BASE_URL": upstream.base_url,
        "OPENAI_API_KEY": TEST_OPENAI_KEY,
        "OPENAI_MAX_RETRIES": "0",
        "SESSIONS_DB_PATH": str(scratch / "sessions.sqlite3"),
        "HOME": str(scratch),
    }
    errors = scratch / "stderr.log"
    with errors.open("wb") as stderr:
        process = subprocess.Popen(
            ["/bin/sh", str(task_root / "run.sh")],
            env=environment,
            cwd=scratch,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_WITHIN_SECONDS
    try:
        while True:
            assert process.poll() is None, errors.read_text()
            assert time.monotonic() < deadline, "run.sh did not answer /health in time"
            try:
                if httpx2.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx2.TransportError:
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_readiness_path_answers(server: str) -> None:
    response = httpx2.get(f"{server}/health", headers=adapter_headers())

    assert response.status_code == 200


def test_run_script_serves_behind_the_adapter_only(server: str) -> None:
    # run.sh sets LAMBDA_WEB_ADAPTER itself: a request without the adapter's context is refused.
    response = httpx2.post(f"{server}/chat", json={"message": "Hi"}, timeout=5)

    assert response.status_code == 401


def _first_event_then_rest(response: httpx2.Response) -> tuple[float, str]:
    """When the first `data:` line arrived, and every line after it."""
    lines = response.iter_lines()
    for line in lines:
        if line.startswith("data:"):
            return time.monotonic(), "\n".join(lines)
    raise AssertionError("no event")


def test_chat_stream_reaches_the_client_before_openai_finished(
    server: str, upstream: FakeOpenAI
) -> None:
    upstream.enqueue(Reply(stream=stream_of("one two three four"), chunk_delay=CHUNK_DELAY))

    with httpx2.stream(
        "POST",
        f"{server}/chat",
        json={"message": "Hi", "stream": True},
        headers=adapter_headers(),
        timeout=10,
    ) as response:
        first_event_at, rest = _first_event_then_rest(response)

    assert response.status_code == 200
    assert "event: done" in rest
    assert first_event_at < upstream.requests[-1].events_sent_at[-1]


def test_v1_stream_reaches_the_client_before_openai_finished(
    server: str, upstream: FakeOpenAI
) -> None:
    upstream.enqueue(Reply(stream=stream_of("one two three four"), chunk_delay=CHUNK_DELAY))
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}], "stream": True}

    with httpx2.stream(
        "POST", f"{server}/v1/chat/completions", json=body, headers=adapter_headers(), timeout=10
    ) as response:
        first_event_at, rest = _first_event_then_rest(response)

    assert response.status_code == 200
    assert rest.rstrip().endswith("data: [DONE]")
    assert first_event_at < upstream.requests[-1].events_sent_at[-1]


def test_serving_writes_nothing_into_the_task_root(task_root: Path, server: str) -> None:
    # Read-only, as /var/task (root may write anyway: the file list shows it did not).
    httpx2.post(f"{server}/chat", json={"message": "Hi"}, headers=adapter_headers(), timeout=10)

    assert _files(task_root) == (task_root.parent / "files-as-built").read_text().splitlines()
    assert (task_root / "run.sh").read_bytes() == (ARTIFACT / "run.sh").read_bytes()
