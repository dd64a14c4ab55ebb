"""Property-based bad input: whatever arrives, a documented 4xx (or a 200), never a 5xx,
and OpenAI is only ever called at the configured endpoint, with the configured model."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat_api.schemas import MAX_HISTORY_TURNS
from tests.fake_openai import FakeOpenAI

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
DOCUMENTED = {200, 400, 413}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
# Text with control characters, lone surrogates' neighbours, and whitespace-only strings.
texts = st.text(st.characters(codec="utf-8"), max_size=50) | st.sampled_from(
    ["", " ", "\t\n\r", "\x00", "\x1b[31m", "\u200b", "sk-not-ours"]
)
turns = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system", "tool", ""]), "content": texts}
)
chat_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"message": texts}),
    st.fixed_dictionaries({"message": texts, "history": st.lists(turns, max_size=5)}),
    st.fixed_dictionaries(
        {"message": texts},
        optional={"model": st.text(), "base_url": st.text(), "extra": json_values},
    ),
)


def assert_error_shape(status: int, body: Any) -> None:
    assert status in DOCUMENTED, (status, body)
    if status != 200:
        assert isinstance(body["error"], str)
        assert body["error"]


def assert_only_the_configured_call(fake_openai: FakeOpenAI) -> None:
    for sent in fake_openai.requests:
        assert (sent.method, sent.path) == ("POST", "/v1/chat/completions")
        # Always streamed (an attempt's timeout bounds the first byte, never the generation)
        # and capped: nothing of the request's choosing besides the messages.
        assert set(sent.json) == {
            "model",
            "messages",
            "max_completion_tokens",
            "stream",
            "stream_options",
        }
        assert sent.json["model"] == "gpt-4o-mini"
        assert sent.json["max_completion_tokens"] == 4096
        assert sent.json["stream"] is True
        assert sent.json["stream_options"] == {"include_usage": True}
        assert sent.json["messages"][0]["role"] == "system"
        assert all(m["role"] in {"user", "assistant"} for m in sent.json["messages"][1:])


@FUZZ
@given(body=chat_bodies)
def test_any_json_body_gets_a_documented_answer(
    client: TestClient, fake_openai: FakeOpenAI, body: Any
) -> None:
    response = client.post("/chat", json=body)

    assert_error_shape(response.status_code, response.json())
    assert_only_the_configured_call(fake_openai)


@FUZZ
@given(raw=st.binary(max_size=200))
def test_any_bytes_get_a_documented_answer(
    client: TestClient, fake_openai: FakeOpenAI, raw: bytes
) -> None:
    response = client.post("/chat", content=raw, headers={"content-type": "application/json"})

    assert_error_shape(response.status_code, response.json())
    assert_only_the_configured_call(fake_openai)


@FUZZ
@given(
    host=st.sampled_from(["evil.example.com", "169.254.169.254", "localhost:1"]),
    header=st.sampled_from(["host", "x-forwarded-host", "forwarded", "x-openai-base-url"]),
)
def test_request_headers_cannot_redirect_the_upstream_call(
    client: TestClient, fake_openai: FakeOpenAI, host: str, header: str
) -> None:
    response = client.post("/chat", json={"message": "hi"}, headers={header: host})

    assert response.status_code == 200
    assert fake_openai.requests
    assert_only_the_configured_call(fake_openai)


@pytest.mark.parametrize(
    "body",
    [b'{"message": ', b'{"message": "\xff\xfe"}', b'\xff\xfe{"message": "x"}'],
    ids=["unparseable", "invalid-utf8-in-a-string", "not-utf8"],
)
def test_body_that_is_not_json_is_400(
    client: TestClient, fake_openai: FakeOpenAI, body: bytes
) -> None:
    response = client.post("/chat", content=body, headers={"content-type": "application/json"})

    assert response.status_code == 400
    assert response.json() == {"error": "Request body is not valid JSON."}
    assert fake_openai.requests == []


def test_deeply_nested_json_is_400(client: TestClient, fake_openai: FakeOpenAI) -> None:
    depth = 20_000
    body = b'{"message": ' + b"[" * depth + b"]" * depth + b"}"

    response = client.post("/chat", content=body, headers={"content-type": "application/json"})

    assert response.status_code == 400
    assert fake_openai.requests == []


def test_huge_history_is_400_or_413_without_calling_openai(
    client: TestClient, fake_openai: FakeOpenAI
) -> None:
    short = [{"role": "user", "content": "x"}] * (MAX_HISTORY_TURNS * 20)
    long = [{"role": "user", "content": "x" * 10_000}] * MAX_HISTORY_TURNS

    assert client.post("/chat", json={"message": "hi", "history": short}).status_code == 400
    assert client.post("/chat", json={"message": "hi", "history": long}).status_code == 413
    assert fake_openai.requests == []


def test_control_characters_reach_openai_as_sent(
    client: TestClient, fake_openai: FakeOpenAI
) -> None:
    message = "bell\x07 nul\x00 esc\x1b[0m"

    response = client.post("/chat", json={"message": message})

    assert response.status_code == 200
    assert fake_openai.requests[-1].json["messages"][-1]["content"] == message
