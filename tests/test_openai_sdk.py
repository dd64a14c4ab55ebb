"""The official `openai` SDK as the client: under uvicorn on loopback and through Lambda.

Sync and async, streaming and not, OpenAI's exception classes for every failure, and the
client key check. OpenAI itself is the loopback fake server.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import openai
import pytest

from tests.conftest import CLIENT_API_KEY, TEST_OPENAI_KEY, Configure, LambdaRuntime, Serve
from tests.fake_openai import FakeOpenAI, Reply, chunk, completion, error_body, stream_of
from tests.lambda_transport import EventSource
from tests.sdk import Service

HI: list[Any] = [{"role": "user", "content": "Hi"}]


def _service(request: pytest.FixtureRequest, lambda_source: EventSource) -> Service:
    """Under uvicorn for the param "uvicorn", else the Lambda handler behind `lambda_source`."""
    if request.param == "uvicorn":
        serve: Serve = request.getfixturevalue("serve")
        return Service.served(serve())
    runtime: LambdaRuntime = request.getfixturevalue("lambda_runtime")
    return Service.on_lambda(runtime, lambda_source)


@pytest.fixture(params=["uvicorn", "lambda"])
def service(request: pytest.FixtureRequest, fake_openai: FakeOpenAI) -> Service:
    """The service under uvicorn, or the Lambda handler behind the REST API (key checked there)."""
    return _service(request, "rest-api")


@pytest.fixture(params=["uvicorn", "lambda-function-url"])
def self_checking_service(request: pytest.FixtureRequest, fake_openai: FakeOpenAI) -> Service:
    """The service where the app checks client keys itself."""
    return _service(request, "function-url")


# --- answers ---------------------------------------------------------------------------------


def test_sync_completion_returns_openais_answer(service: Service, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(body=completion("Hello, human.", model="gpt-4o-mini-2024")))

    with service.client() as client:
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=HI)

    assert answer.choices[0].message.content == "Hello, human."
    assert answer.model == "gpt-4o-mini-2024"
    assert answer.usage is not None
    assert answer.usage.total_tokens == 11


def ask_async(service: Service) -> str | None:
    """One completion through the async SDK client; its text."""

    async def ask() -> str | None:
        async with service.async_client() as client:
            answer = await client.chat.completions.create(model="gpt-4o-mini", messages=HI)
        return answer.choices[0].message.content

    return asyncio.run(ask())


def test_async_completion_returns_openais_answer(service: Service) -> None:
    assert ask_async(service) == "Echo: Hi"


def test_openai_gets_the_servers_key_never_the_clients(
    service: Service, fake_openai: FakeOpenAI
) -> None:
    with service.client() as client:
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HI)

    sent = fake_openai.requests[-1]
    assert sent.headers["authorization"] == f"Bearer {TEST_OPENAI_KEY}"
    assert CLIENT_API_KEY not in str(sent.headers)
    assert TEST_OPENAI_KEY not in raw.http_response.text


def test_sync_stream_yields_the_chunks_and_the_usage_chunk(
    service: Service, fake_openai: FakeOpenAI
) -> None:
    with service.client() as client:
        stream = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=HI,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: Hi"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 2
    assert fake_openai.requests[-1].json["stream_options"] == {"include_usage": True}


def test_async_stream_yields_the_chunks(service: Service) -> None:
    async def collect() -> str:
        async with service.async_client() as client:
            stream = await client.chat.completions.create(
                model="gpt-4o-mini", messages=HI, stream=True
            )
            return "".join([c.choices[0].delta.content or "" async for c in stream])

    assert asyncio.run(collect()) == "Echo: Hi"


def test_models_lists_the_allowed_models(service: Service, configure: Configure) -> None:
    configure(ALLOWED_MODELS="gpt-4o-mini, gpt-4.1")

    with service.client() as client:
        models = client.models.list()

    assert [model.id for model in models] == ["gpt-4o-mini", "gpt-4.1"]


# --- parameters ------------------------------------------------------------------------------


def test_standard_parameters_pass_through_unchanged(
    service: Service, fake_openai: FakeOpenAI
) -> None:
    tools: Any = [{"type": "function", "function": {"name": "now", "parameters": {}}}]
    messages: Any = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}], "name": "ada"},
    ]

    with service.client() as client:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=messages,
            temperature=0.2,
            top_p=0.9,
            max_tokens=50,
            stop=["END"],
            user="user-1",
            response_format={"type": "json_object"},
            tools=tools,
            tool_choice="auto",
            seed=7,
        )

    assert fake_openai.requests[-1].json == {
        "model": "gpt-4o-mini",
        "messages": messages,
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 50,
        "stop": ["END"],
        "user": "user-1",
        "response_format": {"type": "json_object"},
        "tools": tools,
        "tool_choice": "auto",
        "seed": 7,
    }


def sent_for_a_completion(service: Service, fake_openai: FakeOpenAI, model: str) -> dict[str, Any]:
    """The body OpenAI received for one plain completion with `model` through the SDK."""
    with service.client() as client:
        client.chat.completions.create(model=model, messages=HI)
    return fake_openai.requests[-1].json


def test_without_a_token_limit_the_configured_cap_is_sent(
    service: Service, fake_openai: FakeOpenAI, configure: Configure
) -> None:
    configure(MAX_COMPLETION_TOKENS="300")

    sent = sent_for_a_completion(service, fake_openai, "gpt-4o-mini")

    assert sent["max_completion_tokens"] == 300


def test_model_outside_the_allow_list_is_bad_request(
    service: Service, fake_openai: FakeOpenAI
) -> None:
    with service.client() as client, pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="gpt-4.5-preview", messages=HI)

    assert raised.value.param == "model"
    assert raised.value.code == "model_not_allowed"
    assert fake_openai.requests == []


def test_another_allowed_model_is_sent_to_openai(
    service: Service, fake_openai: FakeOpenAI, configure: Configure
) -> None:
    configure(ALLOWED_MODELS="gpt-4o-mini,gpt-4.1")

    sent = sent_for_a_completion(service, fake_openai, "gpt-4.1")

    assert sent["model"] == "gpt-4.1"


@pytest.mark.parametrize("name", ["max_tokens", "max_completion_tokens"])
def test_token_limit_over_the_cap_is_bad_request(
    service: Service, fake_openai: FakeOpenAI, configure: Configure, name: str
) -> None:
    configure(MAX_COMPLETION_TOKENS="100")
    limit: Any = {name: 101}

    with service.client() as client, pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=HI, **limit)

    assert raised.value.param == name
    assert fake_openai.requests == []


@pytest.mark.parametrize(
    "extra",
    [{"base_url": "http://attacker.example/v1"}, {"api_base": "http://attacker.example"}],
    ids=["base_url", "api_base"],
)
def test_parameter_outside_the_allow_list_is_rejected_like_openai_does(
    service: Service, fake_openai: FakeOpenAI, extra: dict[str, Any]
) -> None:
    with service.client() as client, pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=HI, extra_body=extra)

    name = next(iter(extra))
    body: Any = raised.value.body
    assert body["message"] == f"Unrecognized request argument supplied: {name}"
    assert raised.value.param == name
    assert raised.value.code == "unknown_parameter"
    assert fake_openai.requests == []


def test_out_of_range_value_is_bad_request_naming_the_parameter(service: Service) -> None:
    with service.client() as client, pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=HI, temperature=5)

    assert raised.value.param == "temperature"
    assert raised.value.type == "invalid_request_error"


# --- upstream failures -----------------------------------------------------------------------


UPSTREAM_FAILURES = {
    "rate-limit": (
        Reply(status=429, body=error_body("slow down", "requests"), headers={"retry-after": "3"}),
        openai.RateLimitError,
        429,
    ),
    "server-error": (
        Reply(status=500, body=error_body("boom", "server_error")),
        openai.InternalServerError,
        502,
    ),
    "rejected-key": (
        Reply(status=401, body=error_body("Incorrect API key provided: sk-t****", "x")),
        openai.InternalServerError,
        502,
    ),
    "bad-request": (
        Reply(status=400, body=error_body("context_length_exceeded: sk-t****", "x")),
        openai.BadRequestError,
        400,
    ),
    "malformed": (Reply(body=b"not json"), openai.InternalServerError, 502),
}


@pytest.mark.parametrize(
    ("reply", "exception", "status"), UPSTREAM_FAILURES.values(), ids=UPSTREAM_FAILURES.keys()
)
def test_upstream_failure_raises_the_sdks_exception_without_upstream_text(
    service: Service,
    fake_openai: FakeOpenAI,
    reply: Reply,
    exception: type[openai.APIStatusError],
    status: int,
) -> None:
    fake_openai.enqueue(reply)

    with service.client() as client, pytest.raises(exception) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=HI)

    assert raised.value.status_code == status
    assert "sk-t" not in raised.value.response.text
    assert set(raised.value.response.json()["error"]) == {"message", "type", "param", "code"}


def test_upstream_failure_before_the_stream_raises_before_any_chunk(
    service: Service, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(Reply(status=429, body=error_body("slow down", "requests")))

    with service.client() as client, pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o-mini", messages=HI, stream=True)


def test_stream_broken_off_midway_raises_api_error_after_the_chunks_so_far(
    service: Service, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(Reply(stream=stream_of("one two three"), break_after=2))
    received: list[str] = []

    with service.client() as client:
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=HI, stream=True)
        with pytest.raises(openai.APIError) as raised:
            received.extend(c.choices[0].delta.content or "" for c in stream)

    assert received == ["", "one"]
    assert raised.value.message == "OpenAI stopped answering midway. Try again."
    assert raised.value.body == {
        "message": "OpenAI stopped answering midway. Try again.",
        "type": "upstream_error",
        "param": None,
        "code": None,
    }


def test_stream_that_ends_before_the_answer_finished_raises_api_error(
    service: Service, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(Reply(stream=[chunk("", role="assistant"), chunk("Hel")]))

    with service.client() as client:
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=HI, stream=True)
        with pytest.raises(openai.APIError, match="could not read"):
            list(stream)


def test_async_stream_broken_off_midway_raises_api_error(
    service: Service, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(Reply(stream=stream_of("one two three"), break_after=3))

    async def consume() -> None:
        async with service.async_client() as client:
            stream = await client.chat.completions.create(
                model="gpt-4o-mini", messages=HI, stream=True
            )
            async for _ in stream:
                pass

    with pytest.raises(openai.APIError, match=r"OpenAI stopped answering midway\."):
        asyncio.run(consume())


def test_a_chunk_newer_than_the_sdks_types_is_relayed_as_openai_sent_it(
    service: Service, fake_openai: FakeOpenAI
) -> None:
    # A finish reason and a field the SDK's types do not know: validation refuses the chunk,
    # and it is built leniently instead, as the SDK itself builds chunks.
    newer = chunk(finish_reason="a_reason_from_the_future") | {"obfuscation": "x1y2"}
    fake_openai.enqueue(Reply(stream=[chunk("", role="assistant"), chunk("Hi"), newer]))

    with service.client() as client:
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=HI, stream=True)
        received = list(stream)

    assert [c.choices[0].delta.content for c in received] == ["", "Hi", None]
    last = received[-1]
    assert last.choices[0].finish_reason == "a_reason_from_the_future"  # type: ignore[comparison-overlap]
    assert last.to_dict()["obfuscation"] == "x1y2"


@pytest.mark.parametrize("event", [b"42", b'"text"', b"[1, 2]", b"null"])
def test_a_stream_event_that_is_not_an_object_raises_api_error(
    service: Service, fake_openai: FakeOpenAI, event: bytes
) -> None:
    fake_openai.enqueue(Reply(stream=[chunk("", role="assistant"), event]))

    with service.client() as client:
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=HI, stream=True)
        with pytest.raises(openai.APIError, match="could not read"):
            list(stream)


# --- streaming as it happens -----------------------------------------------------------------


def test_under_uvicorn_the_first_chunk_arrives_before_openai_finished(
    serve: Serve, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(Reply(stream=stream_of("one two three"), chunk_delay=0.15))

    with Service.served(serve()).client() as client:
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=HI, stream=True)
        next(stream)
        first_chunk_at = time.monotonic()
        list(stream)

    assert first_chunk_at < fake_openai.requests[-1].events_sent_at[-1]


# --- client keys -----------------------------------------------------------------------------


def test_wrong_client_key_raises_authentication_error_and_openai_is_not_called(
    self_checking_service: Service, fake_openai: FakeOpenAI
) -> None:
    with (
        self_checking_service.client(api_key="sk-guessed") as client,
        pytest.raises(openai.AuthenticationError) as raised,
    ):
        client.chat.completions.create(model="gpt-4o-mini", messages=HI)

    assert raised.value.code == "invalid_api_key"
    assert fake_openai.requests == []


def test_wrong_client_key_is_refused_on_models_too(self_checking_service: Service) -> None:
    with (
        self_checking_service.client(api_key="sk-guessed") as client,
        pytest.raises(openai.AuthenticationError),
    ):
        client.models.list()


def test_async_client_with_the_right_key_is_served(self_checking_service: Service) -> None:
    assert ask_async(self_checking_service) == "Echo: Hi"


def test_rest_api_trusts_api_gateways_key_check(
    lambda_runtime: LambdaRuntime, configure: Configure
) -> None:
    # API Gateway checked the key and names its id; the app does not check a second time.
    configure(CLIENT_API_KEYS="some-other-key")

    with Service.on_lambda(lambda_runtime, "rest-api").client(api_key="unused") as client:
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=HI)

    assert answer.choices[0].message.content == "Echo: Hi"
