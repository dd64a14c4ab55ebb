"""Every benchmark in one run, so each ratio compares figures taken side by side.

`make bench` runs it after `make build`; it prints the Markdown table of bench/README.md.
Everything talks to the tests' fake OpenAI server on loopback, in a process of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
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

COLD_RUNS = 31
WARM_INVOCATIONS = 2000
LOAD_REQUESTS = 3000
LOAD_CONCURRENCY = 32
LOAD_ROUNDS = 5

# Targets from the issues: the ratio or size each measure must stay within.
COLD_TARGET = 1.25
WARM_TARGET = 1.2
SESSION_TARGET = 1.6
THROUGHPUT_TARGET = 0.9
ZIPPED_TARGET_MB = 12
RSS_TARGET_MB = 64


@dataclass
class Run:
    """One fresh process, timed from its spawn: to the end of the handler's import, to the
    handler's return (what Lambda bills: init and the invocation), to the process's exit
    (plus the interpreter's teardown, which Lambda does not bill); and its peak RSS."""

    imported_ms: float
    response_ms: float
    exit_ms: float
    cpu_ms: float  # the process's CPU time up to the handler's return
    rss_mb: float

    @property
    def invocation_ms(self) -> float:
        """The first invocation alone: from the end of the import to the handler's return."""
        return self.response_ms - self.imported_ms


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


def cold_start(paths: list[Path], module: str, environment: dict[str, str], stamps: Path) -> Run:
    """Time one fresh process from spawn to the handler's return and to exit; its peak RSS.

    The child writes the monotonic clock (system-wide on Linux, so comparable with this
    process's) when its import was done and when the handler returned.
    """
    command = child("cold", paths, module, EVENT, stamps)
    stamps.unlink(missing_ok=True)
    spawned = time.monotonic_ns()
    # Log lines are written as on Lambda, then dropped; errors are kept for the report.
    process = subprocess.Popen(
        command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(process.pid, 0)
    exited = time.monotonic_ns()
    assert process.stderr is not None
    errors = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"cold start of {module} failed:\n{errors}")
    imported, returned, cpu = (int(stamp) for stamp in stamps.read_text().split())
    return Run(
        imported_ms=(imported - spawned) / 1e6,
        response_ms=(returned - spawned) / 1e6,
        exit_ms=(exited - spawned) / 1e6,
        cpu_ms=cpu / 1e6,
        rss_mb=usage.ru_maxrss / 1024,  # ru_maxrss is in KiB on Linux
    )


def cold_starts(
    variants: dict[str, tuple[list[Path], str]], environment: dict[str, str], scratch: Path
) -> dict[str, list[Run]]:
    """`COLD_RUNS` rounds, each starting every variant once, in an order rotated per round.

    Interleaved, drift on this shared machine hits every variant alike; rotated, none always
    runs first (or right after the same neighbour). Round i of each variant forms a pair.
    """
    names = list(variants)
    runs: dict[str, list[Run]] = {name: [] for name in names}
    for round_number in range(COLD_RUNS):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            paths, module = variants[name]
            runs[name].append(cold_start(paths, module, environment, scratch / "stamps"))
    return runs


def instructions(paths: list[Path], module: str, environment: dict[str, str]) -> int | None:
    """Instructions from spawn to the handler's return, as valgrind counts them (if installed).

    Unlike time, the count hardly moves with the load of a shared machine (repeated runs agree
    within 0.1%). It is not what Lambda bills: it leaves out what memory stalls cost (most of
    a garbage collection pass) and waiting on I/O.
    """
    if shutil.which("valgrind") is None:
        return None
    counter = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
    result = subprocess.run(
        [*counter, *child("count", paths, module, EVENT)],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    counted = re.search(r"I\s+refs:\s+([\d,]+)", result.stderr)
    assert counted, result.stderr
    return int(counted[1].replace(",", ""))


def paired_ratio(runs: list[Run], baseline: list[Run], measure: str) -> float:
    """The median over rounds of one variant's figure over the baseline's in the same round."""
    return statistics.median(
        float(getattr(run, measure)) / float(getattr(base, measure))
        for run, base in zip(runs, baseline, strict=True)
    )


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
    # Every worker keeps its connection: with httpx's default of 20 kept alive, the other 12
    # would be closed and opened again between requests, timing TCP handshakes.
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
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
    # Keyless local mode, as `make dev` serves: the minimal app checks no key either.
    environment = {**environment, "ALLOW_KEYLESS_LOCALHOST": "true"}
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
    with fake_openai() as base_url, tempfile.TemporaryDirectory() as scratch:
        environment = lambda_environment(base_url, Path(scratch))
        variants = {
            "floor": ([lean, BENCH], "floor_handler"),
            "lean": ([lean], "chat_api.handler"),
            "no_bytecode": ([bare], "chat_api.handler"),
        }
        runs = cold_starts(variants, environment, Path(scratch))
        counts = {name: instructions(*variants[name], environment) for name in ("floor", "lean")}
        warm = warm_latency(lean, environment)
        # The same calls with a token budget: each /chat reserves, then settles (SQLite here).
        budgeted = warm_latency(lean, {**environment, "TOKEN_BUDGET": "1000000000000"})
        api_rps, minimal_rps = throughput(environment)
    unzipped_mb, zipped_mb = artifact_sizes(DEPLOYED_ARTIFACT)

    def cold(name: str, measure: str) -> float:
        return statistics.median(float(getattr(run, measure)) for run in runs[name])

    def cold_ratio(name: str, measure: str) -> float:
        return paired_ratio(runs[name], runs["floor"], measure)

    rss = {name: max(run.rss_mb for run in result) for name, result in runs.items()}
    warm_median = {name: statistics.median(values) for name, values in warm.items()}
    warm_p99 = {name: p99(values) for name, values in warm.items()}
    response_ratio = cold_ratio("lean", "response_ms")
    warm_ratio = warm_median["handler"] / warm_median["client"]
    session_ratio = warm_median["session"] / warm_median["client"]
    rps_ratio = api_rps / minimal_rps

    def cold_row(label: str, name: str, measure: str, target: str = "") -> None:
        print(
            f"| {label} | {cold(name, measure):.0f} | floor {cold('floor', measure):.0f} "
            f"| {cold_ratio(name, measure):.2f}x | {target} |"
        )

    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    print()
    print("| Measure | Chat API | Baseline | Ratio | Target |")
    print("| --- | ---: | ---: | ---: | --- |")
    cold_row(
        f"Cold start, spawn to the handler's response, median of {COLD_RUNS} fresh processes (ms)",
        "lean",
        "response_ms",
        f"<= {COLD_TARGET}x: {verdict(response_ratio <= COLD_TARGET)}",
    )
    cold_row("of which the import (ms)", "lean", "imported_ms")
    cold_row("of which the first invocation (ms)", "lean", "invocation_ms")
    cold_row("Cold start, CPU time to the handler's response (ms)", "lean", "cpu_ms")
    if counts["lean"] and counts["floor"]:
        print(
            "| Cold start, instructions to the handler's response (millions, valgrind) "
            f"| {counts['lean'] / 1e6:.0f} | floor {counts['floor'] / 1e6:.0f} "
            f"| {counts['lean'] / counts['floor']:.2f}x | |"
        )
    cold_row("Cold start, spawn to exit: with the unbilled teardown (ms)", "lean", "exit_ms")
    cold_row(
        "Cold start, default build: no .pyc, spawn to response (ms)",
        "no_bytecode",
        "response_ms",
        f"lean build is {cold('no_bytecode', 'response_ms') / cold('lean', 'response_ms'):.2f}x "
        "faster",
    )
    print(
        f"| Peak RSS of the cold-start process (MB) | {rss['lean']:.1f} "
        f"| floor {rss['floor']:.1f} | {rss['lean'] / rss['floor']:.2f}x "
        f"| <= {RSS_TARGET_MB} MB: {verdict(rss['lean'] <= RSS_TARGET_MB)} |"
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
        f"| {session_ratio:.2f}x "
        f"| <= {SESSION_TARGET}x: {verdict(session_ratio <= SESSION_TARGET)} |"
    )
    print(
        f"| Warm `/chat` continuing a session, p99 (ms) | {warm_p99['session']:.2f} "
        f"| client alone {warm_p99['client']:.2f} "
        f"| {warm_p99['session'] / warm_p99['client']:.2f}x | |"
    )
    budget_median = statistics.median(budgeted["handler"])
    print(
        f"| Warm stateless `/chat` with a token budget (reserve and settle: two SQLite "
        f"writes), median (ms) | {budget_median:.2f} | stateless without a budget "
        f"{warm_median['handler']:.2f} | {budget_median / warm_median['handler']:.2f}x | |"
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
