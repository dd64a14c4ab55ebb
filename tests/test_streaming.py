"""Server-Sent Events: `POST /chat` streamed under uvicorn, and both streams through Lambda."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx2
from openai.types.chat import ChatCompletionChunk

from tests.conftest import LambdaRuntime, events_of, load_event
from tests.fake_openai import FakeOpenAI, Reply, chunk, error_body, stream_of

STREAM_HI = {"message": "Hi", "stream": True}


def lambda_events(result: dict[str, Any]) -> list[httpx2.ServerSentEvent]:
    """A Lambda response's body parsed as SSE, as API Gateway would hand it to the client."""
    response = httpx2.Response(
        result["statusCode"],
        headers=result["headers"],
        content=result["body"].encode(),
        request=httpx2.Request("POST", "https://example.invalid/"),
    )
    return events_of(response)


def test_chat_stream_sends_deltas_then_the_whole_answer_with_usage(
    http: httpx2.Client, fake_openai: FakeOpenAI
) -> None:
    response = http.post("/chat", json=STREAM_HI)

    events = events_of(response)
    assert [e.event for e in events] == ["delta", "delta", "done"]
    assert "".join(e.json()["text"] for e in events[:-1]) == "Echo: Hi"  # type: ignore[index]
    done = events[-1].json()
    assert isinstance(done, dict)
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", done.pop("session_id"))
    assert done == {
        "response": "Echo: Hi",
        "model": "gpt-4o-mini",
        "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
    }
    assert response.headers["cache-control"] == "no-cache"
    sent = fake_openai.requests[-1].json
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}


def test_chat_stream_first_delta_arrives_before_openai_finished(
    http: httpx2.Client, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(Reply(stream=stream_of("one two three"), chunk_delay=0.15))

    with http.stream("POST", "/chat", json=STREAM_HI) as response:
        events = iter(httpx2.EventSource(response))
        first = next(events)
        first_event_at = time.monotonic()
        rest = list(events)

    assert first.json() == {"text": "one"}
    assert rest[-1].event == "done"
    assert first_event_at < fake_openai.requests[-1].events_sent_at[-1]


def test_chat_stream_broken_off_midway_ends_with_an_error_event(
    http: httpx2.Client, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(Reply(stream=stream_of("one two three"), break_after=3))

    events = events_of(http.post("/chat", json=STREAM_HI))

    assert [e.event for e in events] == ["delta", "delta", "error"]
    # Not "could not reach": OpenAI had started answering.
    assert events[-1].json() == {"error": "OpenAI stopped answering midway. Try again."}


def test_chat_stream_with_a_malformed_chunk_ends_with_an_error_event(
    http: httpx2.Client, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(Reply(stream=[chunk("Hel"), b"{not json"]))

    events = events_of(http.post("/chat", json=STREAM_HI))

    assert events[-1].event == "error"
    assert events[-1].json() == {"error": "OpenAI returned a response the service could not read."}


def test_chat_stream_reads_a_chunk_newer_than_the_sdks_types(
    http: httpx2.Client, fake_openai: FakeOpenAI
) -> None:
    newer = chunk("lo", finish_reason="a_reason_from_the_future")
    fake_openai.enqueue(Reply(stream=[chunk("Hel", role="assistant"), newer]))

    events = events_of(http.post("/chat", json=STREAM_HI))

    assert [e.event for e in events] == ["delta", "delta", "done"]
    assert events[-1].json()["response"] == "Hello"  # type: ignore[index]


def test_chat_stream_with_an_event_that_is_not_an_object_ends_with_an_error_event(
    http: httpx2.Client, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(Reply(stream=[chunk("Hel", role="assistant"), b"[1, 2]"]))

    events = events_of(http.post("/chat", json=STREAM_HI))

    assert [e.event for e in events] == ["delta", "error"]
    assert events[-1].json() == {"error": "OpenAI returned a response the service could not read."}


def test_chat_stream_without_content_ends_with_an_error_event(
    http: httpx2.Client, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(Reply(stream=[chunk("", role="assistant"), chunk(finish_reason="stop")]))

    events = events_of(http.post("/chat", json=STREAM_HI))

    assert [e.event for e in events] == ["error"]
    assert events[0].json() == {"error": "OpenAI returned a response the service could not read."}


def test_chat_stream_refused_before_it_starts_is_a_plain_json_error(
    http: httpx2.Client, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(
        Reply(status=429, body=error_body("slow down", "requests"), headers={"retry-after": "2"})
    )

    response = http.post("/chat", json=STREAM_HI)

    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    assert response.json() == {"error": "OpenAI is rate-limiting this service. Try again later."}


def test_chat_stream_through_lambda_is_a_complete_sse_body(
    lambda_runtime: LambdaRuntime,
) -> None:
    result = lambda_runtime.invoke(load_event("chat-stream.json"))

    events = lambda_events(result)
    assert result["statusCode"] == 200
    assert result["body"].endswith("\n\n")
    assert [e.event for e in events][-1] == "done"
    assert events[-1].json()["response"] == "Echo: Hello from a streamed sam local invoke"  # type: ignore[index]


def test_chat_stream_broken_off_through_lambda_ends_with_an_error_event(
    lambda_runtime: LambdaRuntime, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(Reply(stream=stream_of("one two three"), break_after=2))

    events = lambda_events(lambda_runtime.invoke(load_event("chat-stream.json")))

    assert [e.event for e in events] == ["delta", "error"]


def test_completions_stream_through_lambda_is_openais_framing_to_done(
    lambda_runtime: LambdaRuntime,
) -> None:
    result = lambda_runtime.invoke(load_event("chat-completions-stream.json"))

    assert result["statusCode"] == 200
    assert result["headers"]["content-type"] == "text/event-stream; charset=utf-8"
    frames = result["body"].split("\n\n")
    assert frames[-2:] == ["data: [DONE]", ""]
    chunks = [
        ChatCompletionChunk.model_validate(json.loads(frame.removeprefix("data: ")))
        for frame in frames[:-2]
    ]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: Hello from an OpenAI SDK"
    assert chunks[-1].usage is not None
