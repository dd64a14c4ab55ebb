"""`Idempotency-Key` on `POST /v1/chat/completions` and `POST /v1/responses`, on both stores."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncGenerator
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient
from openai.types.chat import ChatCompletionChunk

from chat_api.caller import key_digest
from chat_api.clients import get_session_store
from chat_api.compat_schemas import ResponseCreateRequest
from chat_api.exceptions import IdempotencyKeyInUse
from chat_api.schemas import ChatRequest
from chat_api.services.idempotency import Answered, Idempotent, new_claim
from chat_api.store.base import ClaimedResponse, SessionStore
from chat_api.store.rules import CLAIM_LEASE_SECONDS
from tests.conftest import CLIENT_API_KEY, AppClient, Clock, Configure, Serve, events_of
from tests.fake_openai import FakeOpenAI, Reply, chunk, completion, error_body
from tests.sdk import Service

COMPLETION = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}
RESPONSE = {"model": "gpt-4o-mini", "input": "Hello"}
ROUTES = [("/v1/chat/completions", COMPLETION), ("/v1/responses", RESPONSE)]
CALLER = f"key-{key_digest(CLIENT_API_KEY)}"


def post(api: TestClient, path: str, body: object, key: str = "retry-1") -> httpx2.Response:
    return api.post(path, json=body, headers={"Idempotency-Key": key})


def answer_text(response: httpx2.Response) -> str:
    """The answer's text: of a completion or a response, whole or streamed."""
    if not response.headers["content-type"].startswith("text/event-stream"):
        data = response.json()
        if data["object"] == "chat.completion":
            return str(data["choices"][0]["message"]["content"])
        return _output_text(data)
    text = ""
    for event in events_of(response):
        if event.data == "[DONE]":
            continue
        data = json.loads(event.data)
        if event.event.startswith("response.") and event.event != "response.completed":
            continue
        if event.event == "response.completed":
            return _output_text(data["response"])
        text += "".join(choice["delta"].get("content") or "" for choice in data["choices"])
    return text


def _output_text(response: dict[str, Any]) -> str:
    return "".join(part["text"] for item in response["output"] for part in item["content"])


@pytest.mark.parametrize(("path", "body"), ROUTES)
def test_repeated_key_and_body_replays_the_answer_without_calling_openai_again(
    api: TestClient, fake_openai: FakeOpenAI, path: str, body: dict[str, object]
) -> None:
    first = post(api, path, body)
    second = post(api, path, body)

    assert first.status_code == second.status_code == 200
    assert second.content == first.content
    assert second.headers["content-type"] == "application/json"
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert len(fake_openai.requests) == 1


@pytest.mark.parametrize(("path", "body"), ROUTES)
def test_same_key_with_a_different_body_is_422(
    api: TestClient, fake_openai: FakeOpenAI, path: str, body: dict[str, object]
) -> None:
    post(api, path, body)

    response = post(api, path, {**body, "temperature": 0.5})

    assert response.status_code == 422
    assert response.json()["error"]["message"] == (
        "This Idempotency-Key was already used with a different request body."
    )
    assert len(fake_openai.requests) == 1


def test_keys_are_per_route(api: TestClient, fake_openai: FakeOpenAI) -> None:
    # The same key on /chat and on each /v1 route: three requests, none a replay of another.
    answers = [
        post(api, "/chat", {"message": "Hello"}),
        post(api, "/v1/chat/completions", COMPLETION),
        post(api, "/v1/responses", RESPONSE),
    ]

    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert all("idempotent-replayed" not in answer.headers for answer in answers)
    assert len(fake_openai.requests) == 3


def test_keys_are_per_caller(
    fake_openai: FakeOpenAI, store_kind: str, configure: Configure, app_client: AppClient
) -> None:
    other = "EXAMPLE-another-client-key-1111111111111"
    configure(CLIENT_API_KEYS=f"{CLIENT_API_KEY},{other}")
    with app_client() as api:
        first = post(api, "/v1/responses", RESPONSE)
        second = api.post(
            "/v1/responses",
            json=RESPONSE,
            headers={"Idempotency-Key": "retry-1", "x-api-key": other},
        )

    assert first.status_code == second.status_code == 200
    assert "idempotent-replayed" not in second.headers
    assert len(fake_openai.requests) == 2


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("path", "body"), ROUTES)
def test_repeat_while_the_first_is_running_is_409(
    api: TestClient, fake_openai: FakeOpenAI, path: str, body: dict[str, object], stream: bool
) -> None:
    fake_openai.enqueue(Reply(delay=0.5))
    sent = {**body, "stream": stream}
    results: list[httpx2.Response] = []
    first = threading.Thread(target=lambda: results.append(post(api, path, sent)))
    first.start()
    deadline = time.monotonic() + 5
    while not fake_openai.requests and time.monotonic() < deadline:
        time.sleep(0.005)  # until the first request is waiting on OpenAI

    second = post(api, path, sent)
    first.join()

    assert second.status_code == 409
    assert second.headers["retry-after"] == "1"
    assert "still running" in second.json()["error"]["message"]
    assert [response.status_code for response in results] == [200]
    assert answer_text(results[0]) == "Echo: Hello"
    assert len(fake_openai.requests) == 1


@pytest.mark.parametrize(("path", "body"), ROUTES)
def test_key_is_freed_when_openai_fails_so_the_retry_runs(
    api: TestClient, fake_openai: FakeOpenAI, path: str, body: dict[str, object]
) -> None:
    fake_openai.enqueue(Reply(status=500, body=error_body("boom", "server_error")))

    failed = post(api, path, body)
    retried = post(api, path, body)

    assert failed.status_code == 502
    assert retried.status_code == 200
    assert "idempotent-replayed" not in retried.headers
    assert len(fake_openai.requests) == 2


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("path", "body"), ROUTES)
def test_key_is_freed_when_the_request_is_refused(
    api: TestClient, fake_openai: FakeOpenAI, path: str, body: dict[str, object], stream: bool
) -> None:
    refused = post(api, path, {**body, "stream": stream, "model": "not-allowed"})
    allowed = post(api, path, {**body, "stream": stream})

    assert refused.status_code == 400
    # Another body with the same key: the refused request left no record behind.
    assert answer_text(allowed) == "Echo: Hello"
    assert len(fake_openai.requests) == 1


def test_an_answer_the_store_cannot_keep_is_still_returned_and_frees_the_key(
    api: TestClient, fake_openai: FakeOpenAI, store_kind: str
) -> None:
    # 500 KB: over DynamoDB's 400 KB item, so that store refuses it; SQLite keeps it.
    fake_openai.enqueue(Reply(body=completion("word " * 100_000)))

    first = post(api, "/v1/chat/completions", COMPLETION)
    retried = post(api, "/v1/chat/completions", COMPLETION)

    assert first.status_code == retried.status_code == 200
    assert len(first.json()["choices"][0]["message"]["content"]) == 500_000
    if store_kind == "dynamodb":
        assert "idempotent-replayed" not in retried.headers
        assert len(fake_openai.requests) == 2
    else:
        assert retried.content == first.content
        assert len(fake_openai.requests) == 1


def test_claim_of_a_request_that_died_is_taken_over_after_the_lease(
    api: TestClient, fake_openai: FakeOpenAI, clock: Clock
) -> None:
    # A request claimed the key and then its container died: nothing completes or frees it.
    request = ResponseCreateRequest.model_validate(RESPONSE)
    get_session_store().claim(new_claim(CALLER, "retry-1", request, clock.now, "/v1/responses"))
    assert post(api, "/v1/responses", RESPONSE).status_code == 409

    clock.advance(CLAIM_LEASE_SECONDS)
    response = post(api, "/v1/responses", RESPONSE)

    assert response.status_code == 200
    assert len(fake_openai.requests) == 1


@pytest.mark.parametrize(("path", "body"), ROUTES)
def test_repeated_streamed_request_replays_the_answer_as_a_stream(
    api: TestClient, fake_openai: FakeOpenAI, path: str, body: dict[str, object]
) -> None:
    streamed = {**body, "stream": True}
    first = post(api, path, streamed)
    second = post(api, path, streamed)

    assert first.status_code == second.status_code == 200
    assert answer_text(first) == answer_text(second) == "Echo: Hello"
    assert second.headers["content-type"].startswith("text/event-stream")
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert len(fake_openai.requests) == 1


def test_replayed_chunk_stream_has_the_usage_chunk_only_if_asked(
    api: TestClient, fake_openai: FakeOpenAI
) -> None:
    with_usage = {**COMPLETION, "stream": True, "stream_options": {"include_usage": True}}
    post(api, "/v1/chat/completions", with_usage, key="usage")
    post(api, "/v1/chat/completions", {**COMPLETION, "stream": True}, key="no-usage")

    replays = [
        [event.data for event in events_of(post(api, "/v1/chat/completions", body, key=key))]
        for body, key in [(with_usage, "usage"), ({**COMPLETION, "stream": True}, "no-usage")]
    ]

    for data in replays:
        assert data[-1] == "[DONE]"
    usages = [[json.loads(item).get("usage") for item in data[:-1]] for data in replays]
    assert usages[0][-1]["total_tokens"] > 0
    assert all(usage is None for usage in usages[1])
    assert len(fake_openai.requests) == 2


@pytest.mark.parametrize(("path", "body"), ROUTES)
def test_streamed_and_whole_requests_with_one_key_are_different_bodies(
    api: TestClient, fake_openai: FakeOpenAI, path: str, body: dict[str, object]
) -> None:
    post(api, path, {**body, "stream": True})

    response = post(api, path, body)

    assert response.status_code == 422
    assert len(fake_openai.requests) == 1


@pytest.mark.parametrize(("path", "body"), ROUTES)
def test_a_stream_that_breaks_off_frees_the_key(
    api: TestClient, fake_openai: FakeOpenAI, path: str, body: dict[str, object]
) -> None:
    fake_openai.enqueue(Reply(break_after=1))
    streamed = {**body, "stream": True}

    broken = post(api, path, streamed)
    retried = post(api, path, streamed)

    assert "stopped answering midway" in json.loads(events_of(broken)[-1].data)["error"]["message"]
    assert answer_text(retried) == "Echo: Hello"
    assert "idempotent-replayed" not in retried.headers
    assert len(fake_openai.requests) == 2


def test_streamed_request_without_a_key_still_streams(
    api: TestClient, fake_openai: FakeOpenAI
) -> None:
    response = api.post("/v1/chat/completions", json={**COMPLETION, "stream": True})

    assert response.status_code == 200
    assert response.text.rstrip().endswith("data: [DONE]")


def test_malformed_key_is_400(api: TestClient, fake_openai: FakeOpenAI) -> None:
    response = post(api, "/v1/responses", RESPONSE, key="has space")

    assert response.status_code == 400
    assert fake_openai.requests == []


def test_the_sdk_gets_the_same_completion_on_a_retried_key(
    serve: Serve, fake_openai: FakeOpenAI
) -> None:
    service = Service.served(serve())
    headers = {"Idempotency-Key": "sdk-retry"}
    with service.client() as client:
        first = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], extra_headers=headers
        )
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], extra_headers=headers
        )

    assert raw.headers["idempotent-replayed"] == "true"
    assert raw.parse() == first
    assert len(fake_openai.requests) == 1


def test_the_sdk_streams_the_same_completion_on_a_retried_key(
    service: Service, fake_openai: FakeOpenAI
) -> None:
    headers = {"Idempotency-Key": "sdk-stream-retry"}
    options: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "extra_headers": headers,
    }
    with service.client() as client:
        first = list(client.chat.completions.create(**options))
        raw = client.chat.completions.with_raw_response.create(**options)
        replayed = list(raw.parse())

    def text(chunks: list[ChatCompletionChunk]) -> str:
        return "".join(choice.delta.content or "" for chunk in chunks for choice in chunk.choices)

    assert raw.headers["idempotent-replayed"] == "true"
    assert text(replayed) == text(first) == "Echo: Hi"
    assert [chunk.choices[0].finish_reason for chunk in replayed if chunk.choices][-1] == "stop"
    assert replayed[-1].usage == first[-1].usage
    assert len(fake_openai.requests) == 1


def test_the_sdk_streams_the_same_response_on_a_retried_key(
    service: Service, fake_openai: FakeOpenAI
) -> None:
    headers = {"Idempotency-Key": "sdk-response-retry"}
    with service.client() as client:
        with client.responses.stream(
            model="gpt-4o-mini", input="Hi", extra_headers=headers
        ) as stream:
            first = stream.get_final_response()
        with client.responses.stream(
            model="gpt-4o-mini", input="Hi", extra_headers=headers
        ) as stream:
            replayed = stream.get_final_response()
        events = list(
            client.responses.create(
                model="gpt-4o-mini", input="Hi", stream=True, extra_headers=headers
            )
        )

    assert replayed.output_text == first.output_text == "Echo: Hi"
    assert replayed.id == first.id
    # `responses.stream` and `create(stream=True)` send the same body: the third is a replay.
    assert [event.type for event in events] == ["response.created", "response.completed"]
    assert [event.sequence_number for event in events] == [0, 1]
    assert len(fake_openai.requests) == 1


def test_the_sdk_gets_tool_calls_and_every_choice_of_a_replayed_stream(
    service: Service, fake_openai: FakeOpenAI, configure: Configure
) -> None:
    configure(MAX_CHOICES="2")  # read at the first request
    call = {"index": 0, "id": "call_1", "type": "function"}
    more = {"arguments": "{}"}
    tool_chunks = [
        {**chunk(role="assistant"), "choices": [{"index": 1, "delta": {"role": "assistant"}}]},
        {
            **chunk(),
            "choices": [
                {
                    "index": 1,
                    "delta": {"tool_calls": [{**call, "function": {"name": "f", "arguments": ""}}]},
                }
            ],
        },
        {
            **chunk(),
            "choices": [{"index": 1, "delta": {"tool_calls": [{"index": 0, "function": more}]}}],
        },
        {**chunk(), "choices": [{"index": 1, "delta": {}, "finish_reason": "tool_calls"}]},
    ]
    fake_openai.enqueue(
        Reply(
            stream=[
                chunk("Cut", role="assistant"),
                *tool_chunks,
                chunk(" short", finish_reason="length"),
            ]
        )
    )
    options: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Hi"}],
        "n": 2,
        "stream": True,
        "extra_headers": {"Idempotency-Key": "sdk-tools"},
    }
    with service.client() as client:
        list(client.chat.completions.create(**options))
        replayed = list(client.chat.completions.create(**options))

    deltas = {(chunk.choices[0].index, chunk.choices[0].finish_reason): chunk for chunk in replayed}
    assert deltas[0, None].choices[0].delta.content == "Cut short"
    tool_call = deltas[1, None].choices[0].delta.tool_calls
    assert tool_call is not None
    assert tool_call[0].id == "call_1"
    assert tool_call[0].function is not None
    assert (tool_call[0].function.name, tool_call[0].function.arguments) == ("f", "{}")
    assert {(0, "length"), (1, "tool_calls")} <= deltas.keys()
    assert len(fake_openai.requests) == 1


def test_a_response_stream_that_ends_with_an_error_event_keeps_nothing(
    api: TestClient, fake_openai: FakeOpenAI
) -> None:
    error = {"type": "error", "code": "server_error", "message": "boom", "sequence_number": 0}
    fake_openai.enqueue(Reply(stream=[error]))
    streamed = {**RESPONSE, "stream": True}

    failed = post(api, "/v1/responses", streamed)
    retried = post(api, "/v1/responses", streamed)

    assert [event.event for event in events_of(failed)] == ["error"]
    assert answer_text(retried) == "Echo: Hello"
    assert "idempotent-replayed" not in retried.headers
    assert len(fake_openai.requests) == 2


# --- the service and the store, directly ----------------------------------------------------


def test_a_stream_the_client_drops_frees_its_key(store: SessionStore, clock: Clock) -> None:
    idempotent = Idempotent(store, CALLER, clock)
    request = ChatRequest(message="Hello", stream=True)

    class Words:
        def add(self, item: str) -> None:
            pass

        def answer(self) -> str:
            return '"kept"'

    async def open_words() -> AsyncGenerator[str]:
        async def words() -> AsyncGenerator[str]:
            yield "one"
            yield "two"

        return words()

    async def dropped_then_retried() -> list[str]:
        dropped = await idempotent.stream("/v1/x", "retry-1", request, open_words, Words())
        assert not isinstance(dropped, Answered)
        assert await anext(dropped) == "one"
        await dropped.aclose()  # as the response does when the client hangs up

        retried = await idempotent.stream("/v1/x", "retry-1", request, open_words, Words())
        assert not isinstance(retried, Answered)
        words = [word async for word in retried]
        replayed = await idempotent.stream("/v1/x", "retry-1", request, open_words, Words())
        assert replayed == Answered('"kept"', replayed=True)
        return words

    assert asyncio.run(dropped_then_retried()) == ["one", "two"]


def test_a_cancelled_request_frees_its_key(store: SessionStore, clock: Clock) -> None:
    # A client that hangs up cancels the request: CancelledError, not Exception.
    idempotent = Idempotent(store, CALLER, clock)
    request = ChatRequest(message="Hello")
    started = asyncio.Event()

    async def never_answers() -> str:
        started.set()
        await asyncio.sleep(60)
        raise AssertionError("not reached")

    async def cancelled_then_retried() -> str:
        running = asyncio.create_task(
            idempotent.run("/v1/responses", "retry-1", request, never_answers)
        )
        await started.wait()
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running

        async def answers() -> str:
            return '{"answer": 1}'

        return (await idempotent.run("/v1/responses", "retry-1", request, answers)).answer

    assert asyncio.run(cancelled_then_retried()) == '{"answer": 1}'


def test_complete_stores_the_answer_only_for_the_claim_that_holds_the_key(
    store: SessionStore, clock: Clock
) -> None:
    request = ChatRequest(message="Hello")
    first = new_claim(CALLER, "k", request, clock.now, "/v1/responses")
    assert store.claim(first) is None
    later = clock.now + CLAIM_LEASE_SECONDS
    taken_over = new_claim(CALLER, "k", request, later, "/v1/responses")
    assert store.claim(taken_over) is None  # the first claim's lease ran out

    with pytest.raises(IdempotencyKeyInUse):
        store.complete(ClaimedResponse(first, '"late"'))
    store.complete(ClaimedResponse(taken_over, '"answer"'))

    record = store.claim(new_claim(CALLER, "k", request, later + 1, "/v1/responses"))
    assert record is not None
    assert record.response == '"answer"'
    assert record.expires_at == pytest.approx(taken_over.expires_at, abs=1)


def test_complete_without_a_claim_is_refused(store: SessionStore, clock: Clock) -> None:
    never_claimed = new_claim(CALLER, "k", ChatRequest(message="Hello"), clock.now, "/v1/x")

    with pytest.raises(IdempotencyKeyInUse):
        store.complete(ClaimedResponse(never_claimed, '"answer"'))

    assert store.claim(never_claimed) is None  # still free: nothing was written
