"""Streaming mode (ResponseStreaming=true): time to first token through run.sh, and its cold start.

`make bench` runs it after `bench.run`; it prints the rows of bench/README.md's table for the
mode. run.sh serves the host twin of the artifact under uvicorn, as the Lambda Web Adapter
starts it, and every request carries the adapter's two context headers. The baselines are
measured in the same run: the fake OpenAI called directly for the first token (both on one
keep-alive client, both warmed, alternated), and the Mangum handler's cold start (spawn to
its response) for run.sh's (spawn to the first answered `/chat`, after the readiness path
answers, as the adapter waits for it), in wall time and in CPU time, which the load of a
shared machine moves less.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench.run import build_host_artifacts, cold_start, fake_openai, free_port

TTFT_REQUESTS = 300
COLD_RUNS = 11
READINESS_POLL_SECONDS = 0.01
# The target: the service adds at most this much to the first token (median).
TTFT_TARGET_MS = 5.0
BODY = {
    "model": "gpt-4o-mini",
    "stream": True,
    "messages": [{"role": "user", "content": "Count to three"}],
}


def adapter_headers() -> dict[str, str]:
    """What the adapter adds to every request: API Gateway's and Lambda's contexts, as JSON."""
    now_ms = int(time.time() * 1000)
    request = {"requestId": "bench", "identity": {"apiKeyId": "bench"}, "requestTimeEpoch": now_ms}
    invocation = {"request_id": "bench", "deadline": now_ms + 300_000}
    return {
        "x-amzn-request-context": json.dumps(request),
        "x-amzn-lambda-context": json.dumps(invocation),
    }


def first_token_ms(client: httpx.Client, url: str, headers: dict[str, str]) -> float:
    """Milliseconds from sending a streamed completion to its first `data:` line."""
    start = time.perf_counter()
    with client.stream("POST", url, json=BODY, headers=headers) as response:
        response.raise_for_status()
        lines = response.iter_lines()
        for line in lines:
            if line.startswith("data:"):
                elapsed = (time.perf_counter() - start) * 1000
                break
        for _ in lines:  # the rest, so the connection is reused
            pass
    return elapsed


def lambda_python(scratch: Path) -> Path:
    """A folder whose python3 is this venv's base interpreter, with nothing installed.

    Lambda's python3 is the runtime's, beside the artifact only. This venv's own would also
    find its dev packages: uvicorn would pick uvloop and httptools (uvicorn[standard]), which
    the artifact does not ship, and measure a faster server than the one deployed.
    """
    bin_dir = scratch / "bin"
    bin_dir.mkdir(exist_ok=True)
    python3 = bin_dir / "python3"
    if not python3.exists():
        python3.symlink_to(Path(sys.base_prefix) / "bin" / "python3.13")
    return bin_dir


def run_sh_environment(task_root: Path, base_url: str, port: int, scratch: Path) -> dict[str, str]:
    """run.sh's environment as the template gives it, with Lambda's bare python3."""
    return {
        "PATH": f"{lambda_python(scratch)}:/usr/bin:/bin",
        "LAMBDA_TASK_ROOT": str(task_root),
        "PORT": str(port),
        "AWS_LWA_INVOKE_MODE": "response_stream",
        "AWS_LWA_READINESS_CHECK_PATH": "/health",
        "GATEWAY_TIMEOUT_SECONDS": "300",
        "OPENAI_API_KEY": "sk-bench",
        "OPENAI_BASE_URL": base_url,
        "SESSIONS_DB_PATH": str(scratch / "sessions.sqlite3"),
    }


@contextmanager
def run_sh(environment: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """run.sh, started; stopped when the block ends."""
    process = subprocess.Popen(
        ["/bin/sh", str(Path(environment["LAMBDA_TASK_ROOT"]) / "run.sh")],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)


def cpu_ms(pid: int) -> float:
    """The CPU time a running process has used (all its threads), from Linux's schedstat."""
    tasks = Path(f"/proc/{pid}/task")
    # Each thread's first schedstat field: nanoseconds spent running.
    return sum(int((task / "schedstat").read_text().split()[0]) for task in tasks.iterdir()) / 1e6


def run_sh_cold_start(task_root: Path, base_url: str, scratch: Path) -> tuple[float, float]:
    """Spawn to the first answered `/chat` (ms), and the CPU time run.sh used by then (ms).

    Readiness is polled every 10 ms, as the adapter does (aws-lambda-web-adapter src/lib.rs,
    `is_web_ready`: `FixedInterval::from_millis(10)`).
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with httpx.Client(timeout=10) as client:
        start = time.perf_counter()
        with run_sh(run_sh_environment(task_root, base_url, port, scratch)) as process:
            while True:
                try:
                    if client.get(f"{url}/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(READINESS_POLL_SECONDS)
            response = client.post(
                f"{url}/chat", json={"message": "Hello!", "store": False}, headers=adapter_headers()
            )
            response.raise_for_status()
            return (time.perf_counter() - start) * 1000, cpu_ms(process.pid)


def main() -> None:
    lean, _ = build_host_artifacts()
    with fake_openai() as base_url, tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        mangum_environment = {
            "PATH": os.environ["PATH"],
            "OPENAI_API_KEY": "sk-bench",
            "OPENAI_BASE_URL": base_url,
            "SESSIONS_DB_PATH": str(scratch / "mangum.sqlite3"),
        }
        # Alternated, so both see the same load on the shared machine.
        run_sh_cold: list[tuple[float, float]] = []
        mangum_cold: list[tuple[float, float]] = []
        for round_number in range(COLD_RUNS):
            run_sh_cold.append(run_sh_cold_start(lean, base_url, scratch))
            stamps = scratch / f"stamps-{round_number}"
            mangum = cold_start([lean], "chat_api.handler", mangum_environment, stamps)
            mangum_cold.append((mangum.response_ms, mangum.cpu_ms))
        port = free_port()
        service = f"http://127.0.0.1:{port}/v1/chat/completions"
        direct = f"{base_url}/chat/completions"
        through: list[float] = []
        alone: list[float] = []
        with (
            run_sh(run_sh_environment(lean, base_url, port, scratch)),
            httpx.Client(timeout=10) as client,
        ):
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    client.get(f"http://127.0.0.1:{port}/health")
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            for _ in range(20):  # warm-up: connections open, lazy imports done
                first_token_ms(client, service, adapter_headers())
                first_token_ms(client, direct, {"authorization": "Bearer sk-bench"})
            for _ in range(TTFT_REQUESTS):
                through.append(first_token_ms(client, service, adapter_headers()))
                alone.append(first_token_ms(client, direct, {"authorization": "Bearer sk-bench"}))
    added = statistics.median(through) - statistics.median(alone)
    verdict = "met" if added <= TTFT_TARGET_MS else "NOT met"
    print(
        f"| Streaming mode: first token of a streamed `/v1/chat/completions` through run.sh, "
        f"median of {TTFT_REQUESTS} (ms) | {statistics.median(through):.2f} "
        f"| fake OpenAI directly {statistics.median(alone):.2f} | +{added:.2f} ms "
        f"| <= +{TTFT_TARGET_MS:.0f} ms: {verdict} |"
    )
    for measure, index, baseline in (
        ("run.sh spawn to the first answered `/chat`", 0, "Mangum, spawn to response"),
        ("CPU time of run.sh to the first answered `/chat`", 1, "Mangum, to response"),
    ):
        run_sh_median = statistics.median(run[index] for run in run_sh_cold)
        mangum_median = statistics.median(run[index] for run in mangum_cold)
        print(
            f"| Streaming mode: cold start, {measure}, median of {COLD_RUNS} (ms) "
            f"| {run_sh_median:.0f} | {baseline} {mangum_median:.0f} "
            f"| {run_sh_median / mangum_median:.2f}x | |"
        )


if __name__ == "__main__":
    main()
