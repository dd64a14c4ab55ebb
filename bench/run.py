"""Every benchmark in one run, so each ratio compares figures taken side by side.

`make bench` runs it after `make build`; it prints the Markdown table of bench/README.md.
Everything talks to the tests' fake OpenAI server on loopback, in a process of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
EVENT = ROOT / "events" / "chat.json"
DEPLOYED_ARTIFACT = ROOT / ".aws-sam" / "build" / "ChatFunction"
SCRATCH = ROOT / ".aws-sam" / "bench"
LAMBDA_PLATFORM = "manylinux2014_aarch64"

COLD_RUNS = 21
WARM_INVOCATIONS = 2000
LOAD_REQUESTS = 3000
LOAD_CONCURRENCY = 32
LOAD_ROUNDS = 3

# Targets from the issue: the ratio each measure must stay within.
COLD_TARGET = 1.2
WARM_TARGET = 1.2
THROUGHPUT_TARGET = 0.9
ZIPPED_TARGET_MB = 15
RSS_TARGET_MB = 128


@dataclass
class Run:
    """One fresh process: its wall time and peak resident memory."""

    ms: float
    rss_mb: float


def build_host_artifacts() -> tuple[Path, Path]:
    """The deployed recipe, built for this machine's CPU, and the same without bytecode.

    The deployed artifact holds arm64 wheels; on another CPU its compiled modules
    (pydantic-core, jiter) cannot load, so the cold start runs an artifact built by the same
    script for this platform. The copy without `__pycache__` is what a default `sam build`
    ships: the same files, no `.pyc` for python3.13.
    """
    machine = platform.machine()
    host_platform = f"manylinux2014_{machine}"
    lean = SCRATCH / f"lean-{machine}"
    bare = SCRATCH / f"no-bytecode-{machine}"
    shutil.rmtree(SCRATCH, ignore_errors=True)
    if host_platform == LAMBDA_PLATFORM:
        shutil.copytree(DEPLOYED_ARTIFACT, lean)
    else:
        subprocess.run(
            [sys.executable, "scripts/build_function.py", "--platform", host_platform, lean],
            cwd=ROOT,
            check=True,
            stderr=subprocess.DEVNULL,
        )
    shutil.copytree(lean, bare, ignore=shutil.ignore_patterns("__pycache__"))
    return lean, bare


@contextmanager
def fake_openai() -> Iterator[str]:
    """The tests' fake OpenAI server in its own process; yields its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.fake_upstream"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdin is not None
    try:
        yield process.stdout.readline().strip()
    finally:
        process.stdin.close()
        process.wait(timeout=10)


def lambda_environment(base_url: str, store: Path) -> dict[str, str]:
    """The function's environment, pointed at the fake server and a SQLite session store.

    Every `/chat` stores its turn. On AWS the store is DynamoDB; here it is the SQLite file
    `make dev` uses, in a folder of the run's own, so each run starts with an empty store.
    """
    return {
        "PATH": os.environ["PATH"],
        "OPENAI_API_KEY": "sk-bench",
        "OPENAI_BASE_URL": base_url,
        "SESSIONS_DB_PATH": str(store / "sessions.sqlite3"),
    }


def child(mode: str, paths: list[Path], *arguments: str | Path | int) -> list[str]:
    """The command line of bench/child.py in a fresh, isolated interpreter."""
    return [
        sys.executable,
        *("-I", "-S", "-B"),
        str(BENCH / "child.py"),
        mode,
        os.pathsep.join(map(str, paths)),
        *map(str, arguments),
    ]


def cold_start(paths: list[Path], module: str, environment: dict[str, str]) -> Run:
    """Time one fresh process from spawn to exit, and read its peak RSS."""
    command = child("cold", paths, module, EVENT)
    start = time.perf_counter()
    # Log lines are written as on Lambda, then dropped; errors are kept for the report.
    process = subprocess.Popen(
        command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(process.pid, 0)
    elapsed_ms = (time.perf_counter() - start) * 1000
    assert process.stderr is not None
    errors = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"cold start of {module} failed:\n{errors}")
    return Run(elapsed_ms, usage.ru_maxrss / 1024)  # ru_maxrss is in KiB on Linux


def warm_latency(lean: Path, environment: dict[str, str]) -> dict[str, list[float]]:
    """Milliseconds per call: both kinds of `/chat`, the client alone, a turn's write alone."""
    command = child("warm", [lean], EVENT, WARM_INVOCATIONS)
    output = subprocess.run(command, env=environment, capture_output=True, text=True, check=True)
    # The handler's log lines come first; the timings are the last line.
    timings: dict[str, list[float]] = json.loads(output.stdout.splitlines()[-1])
    return timings


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def uvicorn(app: list[str], environment: dict[str, str]) -> Iterator[str]:
    """Serve an app with uvicorn on a loopback port; yields its URL once it answers."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", *app, "--port", str(port), "--log-level", "warning"],
        cwd=ROOT,
        env={**os.environ, **environment},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{url}/docs", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


async def load(url: str, requests: int, concurrency: int) -> float:
    """Requests per second of `POST /chat`, `requests` in all, `concurrency` at a time."""
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def send(count: int) -> None:
            # The workers share one iterator: together they send exactly `count` requests.
            remaining = iter(range(count))

            async def worker() -> None:
                for _ in remaining:
                    # Stateless, like the minimal app: the throughput of the service, not of
                    # the local SQLite file (a stored turn's cost is the warm rows' business).
                    response = await client.post(
                        "/chat", json={"message": "Hello!", "store": False}
                    )
                    response.raise_for_status()

            await asyncio.gather(*(worker() for _ in range(concurrency)))

        await send(concurrency * 10)  # warm-up: connections open on both sides
        start = time.perf_counter()
        await send(requests)
        return requests / (time.perf_counter() - start)


def throughput(environment: dict[str, str]) -> tuple[float, float]:
    """Median requests per second of the chat API and of the minimal app, rounds alternated."""
    apps = {
        "chat_api": ["chat_api.main:create_app", "--factory", "--app-dir", "functions"],
        "minimal": ["bench.minimal_app:app"],
    }
    rates: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(LOAD_ROUNDS):
        for name, app in apps.items():
            with uvicorn(app, environment) as url:
                rates[name].append(asyncio.run(load(url, LOAD_REQUESTS, LOAD_CONCURRENCY)))
    return statistics.median(rates["chat_api"]), statistics.median(rates["minimal"])


def artifact_sizes(artifact: Path) -> tuple[float, float]:
    """Unzipped and zipped size in MB, zipped as `sam deploy` does (deflate, default level)."""
    files = [path for path in artifact.rglob("*") if path.is_file()]
    unzipped = sum(path.stat().st_size for path in files)
    with tempfile.TemporaryFile() as archive:
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
            for path in files:
                zipped.write(path, path.relative_to(artifact))
        zipped_size = archive.tell()
    return unzipped / 1e6, zipped_size / 1e6


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def main() -> None:
    if not DEPLOYED_ARTIFACT.is_dir():
        raise SystemExit("No .aws-sam/build/ChatFunction: run `make build` first.")
    lean, bare = build_host_artifacts()
    with fake_openai() as base_url, tempfile.TemporaryDirectory() as store:
        environment = lambda_environment(base_url, Path(store))
        variants = {
            "floor": ([lean, BENCH], "floor_handler"),
            "lean": ([lean], "chat_api.handler"),
            "no_bytecode": ([bare], "chat_api.handler"),
        }
        runs: dict[str, list[Run]] = {name: [] for name in variants}
        for _ in range(COLD_RUNS):  # interleaved, so drift hits every variant alike
            for name, (paths, module) in variants.items():
                runs[name].append(cold_start(paths, module, environment))
        warm = warm_latency(lean, environment)
        api_rps, minimal_rps = throughput(environment)
    unzipped_mb, zipped_mb = artifact_sizes(DEPLOYED_ARTIFACT)

    cold = {name: statistics.median(run.ms for run in result) for name, result in runs.items()}
    rss = {name: max(run.rss_mb for run in result) for name, result in runs.items()}
    warm_median = {name: statistics.median(values) for name, values in warm.items()}
    warm_p99 = {name: p99(values) for name, values in warm.items()}
    cold_ratio = cold["lean"] / cold["floor"]
    warm_ratio = warm_median["handler"] / warm_median["client"]
    session_ratio = warm_median["session"] / warm_median["client"]
    rps_ratio = api_rps / minimal_rps

    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    print()
    print("| Measure | Chat API | Baseline | Ratio | Target |")
    print("| --- | ---: | ---: | ---: | --- |")
    print(
        f"| Cold start, median of {COLD_RUNS} fresh processes (ms) | {cold['lean']:.0f} "
        f"| floor {cold['floor']:.0f} | {cold_ratio:.2f}x "
        f"| <= {COLD_TARGET}x: {verdict(cold_ratio <= COLD_TARGET)} |"
    )
    print(
        f"| Cold start, default build: no .pyc (ms) | {cold['no_bytecode']:.0f} "
        f"| floor {cold['floor']:.0f} | {cold['no_bytecode'] / cold['floor']:.2f}x "
        f"| lean build is {cold['no_bytecode'] / cold['lean']:.2f}x faster |"
    )
    print(
        f"| Peak RSS of the cold-start process (MB) | {rss['lean']:.0f} "
        f"| floor {rss['floor']:.0f} | {rss['lean'] / rss['floor']:.2f}x "
        f"| fits {RSS_TARGET_MB} MB: {verdict(rss['lean'] < RSS_TARGET_MB)} |"
    )
    print(
        f"| Warm `/chat` with client-sent history (stateless: stores nothing), median of "
        f"{WARM_INVOCATIONS} (ms) | {warm_median['handler']:.2f} "
        f"| client alone {warm_median['client']:.2f} | {warm_ratio:.2f}x "
        f"| <= {WARM_TARGET}x: {verdict(warm_ratio <= WARM_TARGET)} |"
    )
    print(
        f"| Warm `/chat` with client-sent history, p99 (ms) | {warm_p99['handler']:.2f} "
        f"| client alone {warm_p99['client']:.2f} "
        f"| {warm_p99['handler'] / warm_p99['client']:.2f}x | |"
    )
    print(
        f"| Warm `/chat` continuing a session (loads it, stores the turn), median (ms) "
        f"| {warm_median['session']:.2f} | client alone {warm_median['client']:.2f} "
        f"| {session_ratio:.2f}x | |"
    )
    print(
        f"| Warm `/chat` continuing a session, p99 (ms) | {warm_p99['session']:.2f} "
        f"| client alone {warm_p99['client']:.2f} "
        f"| {warm_p99['session'] / warm_p99['client']:.2f}x | |"
    )
    print(
        f"| A turn's write alone: `SQLiteSessionStore.append` of a new session, median "
        f"(ms) | {warm_median['write']:.2f} | | | |"
    )
    print(
        f"| Local `/chat` under uvicorn, stateless (requests/s) | {api_rps:.0f} | minimal app "
        f"{minimal_rps:.0f} | {rps_ratio:.2f}x "
        f"| >= {THROUGHPUT_TARGET}x: {verdict(rps_ratio >= THROUGHPUT_TARGET)} |"
    )
    print(
        f"| Artifact, arm64 (MB) | {zipped_mb:.1f} zipped, {unzipped_mb:.1f} unzipped | | "
        f"| <= {ZIPPED_TARGET_MB} MB zipped: {verdict(zipped_mb <= ZIPPED_TARGET_MB)} |"
    )


if __name__ == "__main__":
    main()
