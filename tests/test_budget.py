"""Token budgets: admitted only what fits, settled at OpenAI's usage, never exceeded at once."""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import httpx2
import pytest
from fastapi.testclient import TestClient

from chat_api import clients
from chat_api.caller import client_key_caller_id
from chat_api.deps import budget_store_dependency, get_clock
from chat_api.exceptions import StoreUnavailable
from chat_api.main import create_app
from chat_api.services.budget import Period
from chat_api.store.base import BudgetAccount, BudgetStore, BudgetTally
from chat_api.store.dynamodb import BUDGET_PREFIX
from tests.conftest import (
    CLIENT_API_KEY,
    TEST_OPENAI_KEY,
    Clock,
    Configure,
    Invoke,
    LambdaEvent,
    ReadLogs,
    Secrets,
    Serve,
    authorized_client,
    body_of,
    events_of,
    load_event,
    run_python,
)
from tests.dynamodb_endpoint import DynamoDBEndpoint
from tests.fake_openai import FakeOpenAI, Reply, error_body, stream_of
from tests.test_session_store import SlowSerialClient

OTHER_KEY = "EXAMPLE-second-client-key-000000000000000"
# The output cap dominates each call's bound: a short message's bound is 1000 plus its JSON
# (~150 bytes), so these budgets fit exactly one, or exactly five, such calls.
CAP = "1000"
FITS_ONE = "1500"
FITS_FIVE = "6000"
# OpenAI's midnight after the conftest clock's 2027-01-15T08:00:00Z.
NEXT_MIDNIGHT = 1_800_057_600.0
TALLIES = ("committed", "reserved", "spent")

Chat = Callable[..., httpx2.Response]


def unreported() -> Reply:
    """An answer streamed without a usage chunk: the call settles at its whole reservation."""
    return Reply(stream=stream_of("Fine, thanks"))


@pytest.fixture
def budget(configure: Configure, fake_openai: FakeOpenAI) -> Callable[..., None]:
    """Configure a token budget (and anything else) on top of the fake OpenAI server."""

    def apply(tokens: str | None = FITS_ONE, **variables: str | None) -> None:
        configure(
            TOKEN_BUDGET=tokens,
            MAX_COMPLETION_TOKENS=CAP,
            CLIENT_API_KEYS=f"{CLIENT_API_KEY},{OTHER_KEY}",
            **variables,
        )

    return apply


@pytest.fixture
def app(budget: Callable[..., None], clock: Clock) -> Callable[[], TestClient]:
    """A fresh app on the configured budget, with the test's clock."""

    def build() -> TestClient:
        application = create_app()
        application.dependency_overrides[get_clock] = lambda: clock
        return authorized_client(application)

    return build


def usage_of(client: TestClient, key: str = CLIENT_API_KEY) -> dict[str, Any]:
    response = client.get("/usage", headers={"x-api-key": key})
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def test_usage_reports_the_callers_budget_period_and_reset(
    budget: Callable[..., None], app: Callable[[], TestClient]
) -> None:
    budget(FITS_ONE)
    with app() as client:
        assert usage_of(client) == {
            "period": "2027-01-15",
            "budget": 1500,
            "spent": 0,
            "reserved": 0,
            "resets_at": "2027-01-16T00:00:00Z",
        }


def test_usage_without_a_budget_says_null(
    budget: Callable[..., None], app: Callable[[], TestClient]
) -> None:
    budget(None, TOKEN_BUDGET_PERIOD="month")
    with app() as client:
        body = usage_of(client)
    assert body["budget"] is None
    assert (body["period"], body["resets_at"]) == ("2027-01", "2027-02-01T00:00:00Z")


def test_call_that_does_not_fit_is_429_before_openai_with_retry_after_until_the_reset(
    budget: Callable[..., None], app: Callable[[], TestClient], fake_openai: FakeOpenAI
) -> None:
    budget(FITS_ONE)
    fake_openai.enqueue(unreported())
    with app() as client:
        assert client.post("/chat", json={"message": "Hi", "store": False}).status_code == 200
        refused = client.post("/chat", json={"message": "Hi", "store": False})
        spent = usage_of(client)["spent"]

    assert refused.status_code == 429
    assert "caller's token budget" in refused.json()["error"]
    assert refused.headers["retry-after"] == str(int(NEXT_MIDNIGHT - 1_800_000_000))
    assert len(fake_openai.requests) == 1
    assert 1000 < spent <= 1500


def test_v1_refusal_is_openais_shape_with_budget_exceeded(
    budget: Callable[..., None], app: Callable[[], TestClient], fake_openai: FakeOpenAI
) -> None:
    budget("10")
    with app() as client:
        refused = client.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]},
        )
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "budget_exceeded")
    assert "whole token budget" in error["message"]
    assert "retry-after" in refused.headers
    assert fake_openai.requests == []


def test_call_settles_at_the_usage_openai_reported(
    budget: Callable[..., None], app: Callable[[], TestClient], fake_openai: FakeOpenAI
) -> None:
    budget(FITS_ONE)
    with app() as client:
        # The default echo stream reports 9 prompt tokens and one per word written.
        client.post("/chat", json={"message": "Hi", "store": False}).raise_for_status()
        client.post("/chat", json={"message": "Hi", "store": False}).raise_for_status()
        assert usage_of(client) | {"resets_at": None} == {
            "period": "2027-01-15",
            "budget": 1500,
            "spent": 2 * (9 + 2),
            "reserved": 0,
            "resets_at": None,
        }


def test_v1_stream_asks_for_usage_but_relays_the_usage_chunk_only_if_asked(
    budget: Callable[..., None], app: Callable[[], TestClient], fake_openai: FakeOpenAI
) -> None:
    budget(FITS_ONE)
    request = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
    with app() as client:
        plain = client.post("/v1/chat/completions", json={**request, "stream": True})
        asked = client.post(
            "/v1/chat/completions",
            json={**request, "stream": True, "stream_options": {"include_usage": True}},
        )
        spent = usage_of(client)["spent"]

    def usage_chunks(response: Any) -> list[Any]:
        events = [e.data for e in events_of(response) if e.data != "[DONE]"]
        return [json.loads(data)["usage"] for data in events if json.loads(data).get("usage")]

    assert all(r.json["stream_options"] == {"include_usage": True} for r in fake_openai.requests)
    assert usage_chunks(plain) == []
    assert usage_chunks(asked) == [{"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}]
    assert spent == 2 * 11


def test_v1_call_settles_at_the_completions_usage(
    budget: Callable[..., None], app: Callable[[], TestClient], fake_openai: FakeOpenAI
) -> None:
    budget(FITS_ONE)
    with app() as client:
        client.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]},
        ).raise_for_status()
        assert usage_of(client)["spent"] == 9 + 2


def test_failed_upstream_call_releases_its_reservation(
    budget: Callable[..., None], app: Callable[[], TestClient], fake_openai: FakeOpenAI
) -> None:
    budget(FITS_ONE)
    fake_openai.enqueue(Reply(status=500, body=error_body("boom", "server_error")))
    with app() as client:
        assert client.post("/chat", json={"message": "Hi", "store": False}).status_code == 502
        assert usage_of(client)["spent"] == 0
        # The budget that one call fits is whole again.
        assert client.post("/chat", json={"message": "Hi", "store": False}).status_code == 200


def test_stream_broken_midway_without_usage_settles_at_the_reservation(
    budget: Callable[..., None], app: Callable[[], TestClient], fake_openai: FakeOpenAI
) -> None:
    budget("100000")
    fake_openai.enqueue(unreported(), Reply(stream=stream_of("a b c d"), break_after=2))
    with app() as client:
        client.post("/chat", json={"message": "Hi", "store": False}).raise_for_status()
        whole = usage_of(client)["spent"]
        broken = client.post("/chat", json={"message": "Hi", "store": False, "stream": True})
        after = usage_of(client)

    assert [e.event for e in events_of(broken)][-1] == "error"
    assert after["spent"] == 2 * whole
    assert after["reserved"] == 0


def test_stream_broken_after_the_usage_chunk_settles_at_the_reported_usage(
    budget: Callable[..., None], app: Callable[[], TestClient], fake_openai: FakeOpenAI
) -> None:
    budget("100000")
    events = stream_of("a b", include_usage=True)
    # Every event, the usage chunk included, then the connection drops before [DONE].
    fake_openai.enqueue(Reply(stream=events, break_after=len(events)))
    with app() as client:
        client.post("/chat", json={"message": "Hi", "store": False, "stream": True})
        assert usage_of(client)["spent"] == 9 + 2


def test_client_that_hangs_up_midway_is_counted_at_the_reservation(
    budget: Callable[..., None], serve: Serve, fake_openai: FakeOpenAI
) -> None:
    budget("100000")
    fake_openai.enqueue(Reply(stream=stream_of("one two three four"), chunk_delay=0.3))
    url = serve()
    headers = {"x-api-key": CLIENT_API_KEY}
    with httpx2.stream(
        "POST", f"{url}/chat", json={"message": "Hi", "stream": True}, headers=headers
    ) as response:
        next(response.iter_lines())
    deadline = time.monotonic() + 5
    while (tally := httpx2.get(f"{url}/usage", headers=headers).json())["reserved"]:
        assert time.monotonic() < deadline, "the reservation was never settled"
        time.sleep(0.05)
    assert tally["spent"] > 1000  # the whole bound: the cap and the request's size


def test_new_period_starts_with_the_whole_budget(
    budget: Callable[..., None],
    app: Callable[[], TestClient],
    fake_openai: FakeOpenAI,
    clock: Clock,
) -> None:
    budget(FITS_ONE)
    fake_openai.enqueue(unreported(), unreported())
    with app() as client:
        assert client.post("/chat", json={"message": "Hi", "store": False}).status_code == 200
        assert client.post("/chat", json={"message": "Hi", "store": False}).status_code == 429
        clock.now = NEXT_MIDNIGHT
        assert client.post("/chat", json={"message": "Hi", "store": False}).status_code == 200
        assert usage_of(client)["period"] == "2027-01-16"


def test_override_gives_one_caller_its_own_budget_and_callers_are_independent(
    budget: Callable[..., None], app: Callable[[], TestClient], fake_openai: FakeOpenAI
) -> None:
    budget(
        FITS_ONE,
        TOKEN_BUDGET_OVERRIDES=json.dumps({client_key_caller_id(OTHER_KEY): 100_000}),
    )
    fake_openai.enqueue(*[unreported() for _ in range(4)])
    other = {"x-api-key": OTHER_KEY}
    with app() as client:
        assert client.post("/chat", json={"message": "Hi", "store": False}).status_code == 200
        assert client.post("/chat", json={"message": "Hi", "store": False}).status_code == 429
        for _ in range(3):
            response = client.post("/chat", json={"message": "Hi", "store": False}, headers=other)
            assert response.status_code == 200
        assert usage_of(client, OTHER_KEY)["budget"] == 100_000
        assert usage_of(client)["spent"] == usage_of(client, OTHER_KEY)["spent"] / 3


def test_secret_sets_a_budget_by_client_key(
    secrets: Secrets, configure: Configure, fake_openai: FakeOpenAI
) -> None:
    secrets.create(
        {
            "OPENAI_API_KEY": TEST_OPENAI_KEY,
            "CLIENT_API_KEYS": [CLIENT_API_KEY],
            "TOKEN_BUDGETS": {CLIENT_API_KEY: 0},
        }
    )
    configure(CLIENT_API_KEYS=None)
    secrets.serve_key_from()
    with authorized_client() as client:
        refused = client.post("/chat", json={"message": "Hi"})
        assert usage_of(client)["budget"] == 0
    assert refused.status_code == 429
    assert fake_openai.requests == []


def test_image_input_is_refused_while_a_budget_applies(
    budget: Callable[..., None], app: Callable[[], TestClient], fake_openai: FakeOpenAI
) -> None:
    budget(FITS_ONE)
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    with app() as client:
        response = client.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [image]}]},
        )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unbounded_input"
    assert fake_openai.requests == []


def test_store_failure_refuses_the_call_with_503(
    budget: Callable[..., None], sessions_table: str, fake_openai: FakeOpenAI
) -> None:
    budget(FITS_ONE, SESSIONS_TABLE="no-such-table")
    with authorized_client() as client:
        response = client.post("/chat", json={"message": "Hi", "store": False})
    assert response.status_code == 503
    assert fake_openai.requests == []


def test_refusal_is_counted_in_the_budget_exceeded_metric(
    budget: Callable[..., None], app: Callable[[], TestClient], request_logs: ReadLogs
) -> None:
    budget("10")
    with app() as client:
        client.post("/chat", json={"message": "Hi", "store": False})
    [line] = request_logs()
    assert "BudgetExceeded" in {
        metric["Name"] for metric in line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
    }
    assert line["BudgetExceeded"] == 1


@pytest.fixture
def slow_dynamodb(
    budget: Callable[..., None], sessions_table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app's DynamoDB client as DynamoDB under load: serialised calls of 10 ms each."""
    slow = functools.cache(lambda: SlowSerialClient(boto3.client("dynamodb")))
    monkeypatch.setattr(clients, "get_dynamodb_client", slow)
    budget(FITS_FIVE, SESSIONS_TABLE=sessions_table)


@pytest.fixture(params=["sqlite", "dynamodb"])
def concurrent_store(request: pytest.FixtureRequest, budget: Callable[..., None]) -> str:
    """SQLite in a file, or DynamoDB in moto with per-call latency."""
    if request.param == "dynamodb":
        request.getfixturevalue("slow_dynamodb")
    else:
        budget(FITS_FIVE)
    return str(request.param)


def test_fifty_concurrent_calls_admit_exactly_what_fits_through_uvicorn(
    concurrent_store: str, serve: Serve, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(*[unreported() for _ in range(50)])
    url = serve()
    headers = {"x-api-key": CLIENT_API_KEY}

    def chat(_: int) -> int:
        body = {"message": "Hi", "store": False}
        return httpx2.post(f"{url}/chat", json=body, headers=headers, timeout=30).status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(chat, range(50)))
    tally = httpx2.get(f"{url}/usage", headers=headers).json()

    assert sorted(statuses) == [200] * 5 + [429] * 45
    assert len(fake_openai.requests) == 5
    assert tally["reserved"] == 0
    assert 5 * 1000 < tally["spent"] <= 6000


@pytest.mark.usefixtures("slow_dynamodb")
def test_handler_with_dynamodb_admits_exactly_what_fits(
    invoke: Invoke, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(*[unreported() for _ in range(10)])
    event = load_event("chat.json", body=json.dumps({"message": "Hi", "store": False}))
    responses = [invoke(event) for _ in range(10)]
    usage = invoke(load_event("chat.json", httpMethod="GET", path="/usage", body=None))

    assert [r["statusCode"] for r in responses] == [200] * 5 + [429] * 5
    assert len(fake_openai.requests) == 5
    # The API Gateway key id of the sample event is the caller.
    assert body_of(usage)["reserved"] == 0
    assert 5 * 1000 < body_of(usage)["spent"] <= 6000


@pytest.fixture
def shared_table(budget: Callable[..., None], sessions_table: str) -> Iterator[DynamoDBEndpoint]:
    """The sessions table in moto over HTTP, 250 ms a call each way; a budget that fits five."""
    # A loaded machine can keep 50 environments waiting for the CPU for seconds: not a timeout.
    budget(FITS_FIVE, SESSIONS_TABLE=sessions_table, OPENAI_TIMEOUT_SECONDS="20")
    with DynamoDBEndpoint(latency=0.25) as endpoint:
        yield endpoint


def invoke_at_once(
    events: list[LambdaEvent], table: DynamoDBEndpoint, workdir: Path
) -> list[dict[str, Any]]:
    """Each event in a Lambda environment of its own (tests/lambda_fleet.py), all at once."""
    (workdir / "events.json").write_text(json.dumps(events))
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    fleet = run_python(
        f"from tests.lambda_fleet import main; main({str(workdir / 'events.json')!r}, "
        f"{str(workdir / 'results.json')!r})",
        env={**environment, "AWS_ENDPOINT_URL_DYNAMODB": table.url},
        check=False,
    )
    assert fleet.returncode == 0, fleet.stderr
    responses: list[dict[str, Any]] = json.loads((workdir / "results.json").read_text())
    return responses


def test_fifty_lambda_environments_at_once_admit_exactly_what_fits(
    shared_table: DynamoDBEndpoint, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    # Each call reports 1000 tokens, near its bound (1000 and the request's JSON): what a
    # settlement frees never makes room for a sixth, so five are admitted in any order.
    fake_openai.enqueue(
        *[Reply(stream=stream_of("Fine thanks", include_usage=True, prompt_tokens=998))] * 50
    )
    completion = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
    events = [
        load_event("chat.json", body=json.dumps({"message": "Hi", "store": False})),
        load_event("chat-completions.json", body=json.dumps({**completion, "stream": True})),
    ] * 25
    started = time.time()
    # The environments run on the real clock: a UTC day that ended midway would reset the budget.
    if (ends_in := Period.at(started, "day").resets_at - started) < 60:
        time.sleep(ends_in + 1)
        started = time.time()
    responses = invoke_at_once(events, shared_table, tmp_path)

    outcomes = [r.get("statusCode") or r["error"] for r in responses]
    assert sorted(map(str, outcomes)) == ["200"] * 5 + ["429"] * 45, outcomes
    assert len(fake_openai.requests) == 5
    until_reset = Period.at(started, "day").resets_at - started
    for refused in (r for r in responses if r["statusCode"] == 429):
        error = body_of(refused)["error"]
        if isinstance(error, dict):  # /v1: OpenAI's shape
            assert error["code"] == "budget_exceeded"
            error = error["message"]
        assert "caller's token budget" in error
        assert abs(int(refused["headers"]["retry-after"]) - until_reset) < 60
    # Every state the caller's record went through, in the order DynamoDB applied the writes.
    states = [
        {name: int(write.item_after.get(name, {"N": "0"})["N"]) for name in TALLIES}
        for write in shared_table.writes
        if write.request["Key"]["pk"]["S"].startswith(BUDGET_PREFIX)
    ]
    assert len(states) == 50 + 5  # a reservation each, a settlement each admitted one
    assert max(state["spent"] + state["reserved"] for state in states) <= int(FITS_FIVE)
    assert max(state["committed"] for state in states) <= int(FITS_FIVE)
    assert (states[-1]["spent"], states[-1]["reserved"]) == (5 * 1000, 0)
    # The race was on: more reservations were in flight together than the budget fits, so a
    # store that read the total and then wrote it would have let too many through.
    assert shared_table.most_at_once("UpdateItem") > 5


@pytest.fixture(autouse=True)
def _no_leftover_replies(fake_openai: FakeOpenAI) -> Iterator[None]:
    yield
    fake_openai.replies.clear()


def test_usage_over_the_reservation_is_counted_as_reported(
    budget: Callable[..., None], app: Callable[[], TestClient], fake_openai: FakeOpenAI
) -> None:
    budget("100000")
    events = stream_of("Hi", include_usage=True)
    usage = {"prompt_tokens": 4000, "completion_tokens": 1, "total_tokens": 4001}
    last = events[-1]
    assert isinstance(last, dict)
    events[-1] = {**last, "usage": usage}  # more than the bound: OpenAI's word counts
    fake_openai.enqueue(Reply(stream=events))
    with app() as client:
        client.post("/chat", json={"message": "Hi", "store": False}).raise_for_status()
        assert usage_of(client)["spent"] == 4001


class SettleFails:
    """The real store, except that settlements fail as a throttled DynamoDB's would."""

    def __init__(self, store: BudgetStore) -> None:
        self._store = store

    def reserve(self, account: BudgetAccount, amount: int, ceiling: int) -> bool:
        return self._store.reserve(account, amount, ceiling)

    def settle(self, account: BudgetAccount, reserved: int, actual: int) -> None:
        raise StoreUnavailable("throttled")

    def tally(self, account: BudgetAccount) -> BudgetTally:
        return self._store.tally(account)


def test_failed_settlement_leaves_the_whole_reservation_counted(
    budget: Callable[..., None], fake_openai: FakeOpenAI
) -> None:
    budget(FITS_ONE)
    application = create_app()
    store = SettleFails(clients.get_budget_store())
    application.dependency_overrides[budget_store_dependency] = lambda: store
    with authorized_client(application) as client:
        assert client.post("/chat", json={"message": "Hi", "store": False}).status_code == 200
        tally = usage_of(client)
        assert client.post("/chat", json={"message": "Hi", "store": False}).status_code == 429
    assert tally["spent"] == 0
    assert tally["reserved"] > 1000


# --- every route that calls OpenAI counts -------------------------------------------------------


def test_a_response_settles_at_the_usage_openai_reported(
    budget: Callable[..., None], app: Callable[[], TestClient], fake_openai: FakeOpenAI
) -> None:
    budget(FITS_ONE)
    with app() as client:
        answer = client.post("/v1/responses", json={"model": "gpt-4o-mini", "input": "Hi"})
        assert answer.status_code == 200, answer.text
        usage = usage_of(client)
    assert usage["spent"] == answer.json()["usage"]["total_tokens"] > 0
    assert usage["reserved"] == 0


def test_a_streamed_response_settles_at_the_usage_of_its_last_event(
    budget: Callable[..., None], app: Callable[[], TestClient], fake_openai: FakeOpenAI
) -> None:
    budget(FITS_ONE)
    body = {"model": "gpt-4o-mini", "input": "Hi", "stream": True}
    with app() as client:
        streamed = client.post("/v1/responses", json=body)
        usage = usage_of(client)
    completed = [
        json.loads(line.removeprefix("data: "))
        for line in streamed.text.splitlines()
        if line.startswith("data: ") and '"response.completed"' in line
    ]
    assert usage["spent"] == completed[-1]["response"]["usage"]["total_tokens"] > 0
    assert usage["reserved"] == 0


def test_a_response_that_cannot_fit_is_429_before_openai(
    budget: Callable[..., None], app: Callable[[], TestClient], fake_openai: FakeOpenAI
) -> None:
    budget("500")  # less than the output cap alone
    with app() as client:
        refused = client.post("/v1/responses", json={"model": "gpt-4o-mini", "input": "Hi"})
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "budget_exceeded"
    assert fake_openai.requests == []


def test_previous_response_id_is_refused_while_a_budget_applies(
    budget: Callable[..., None], app: Callable[[], TestClient], fake_openai: FakeOpenAI
) -> None:
    budget(FITS_FIVE)
    with app() as client:
        first = client.post("/v1/responses", json={"model": "gpt-4o-mini", "input": "Hi"}).json()
        follow_up = client.post(
            "/v1/responses",
            json={"model": "gpt-4o-mini", "input": "And?", "previous_response_id": first["id"]},
        )
    assert follow_up.status_code == 400
    assert follow_up.json()["error"]["code"] == "unbounded_input"
    assert len(fake_openai.requests) == 1


def test_embeddings_count_against_the_budget(
    budget: Callable[..., None], app: Callable[[], TestClient], fake_openai: FakeOpenAI
) -> None:
    budget("200")  # the input's JSON is ~75 bytes (model, input, encoding_format)
    body = {"model": "text-embedding-3-small", "input": "Hi"}
    with app() as client:
        answer = client.post("/v1/embeddings", json=body)
        assert answer.status_code == 200, answer.text
        assert usage_of(client)["spent"] == answer.json()["usage"]["total_tokens"]
        too_big = client.post("/v1/embeddings", json={**body, "input": "x" * 300})
    assert too_big.status_code == 429
    assert len(fake_openai.requests) == 1


def test_image_input_passes_when_no_budget_applies(
    budget: Callable[..., None], app: Callable[[], TestClient], fake_openai: FakeOpenAI
) -> None:
    budget(None)
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    with app() as client:
        response = client.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [image]}]},
        )
    assert response.status_code == 200
    assert len(fake_openai.requests) == 1
