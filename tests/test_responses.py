"""`/v1/responses`: the official SDK against uvicorn and the Lambda handler.

Whole and streamed responses, stored responses owned per caller (two client keys), and
every refused tool and parameter. OpenAI is the loopback fake, which keeps what it stores.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import openai
import pytest

from tests.conftest import CLIENT_API_KEY, Configure, LambdaRuntime, Serve
from tests.fake_openai import FakeOpenAI, Reply, error_body, response_events, response_object
from tests.sdk import Service

OTHER_KEY = "EXAMPLE-another-client-key-1111111111111"


@pytest.fixture(params=["uvicorn", "lambda-function-url"])
def two_keys(
    request: pytest.FixtureRequest, fake_openai: FakeOpenAI, configure: Configure
) -> Service:
    """The service checking client keys itself, with two keys: two callers."""
    configure(CLIENT_API_KEYS=f"{CLIENT_API_KEY},{OTHER_KEY}")
    if request.param == "uvicorn":
        serve: Serve = request.getfixturevalue("serve")
        return Service.served(serve())
    runtime: LambdaRuntime = request.getfixturevalue("lambda_runtime")
    return Service.on_lambda(runtime, "function-url")


# --- whole and streamed ---------------------------------------------------------------------


def test_create_returns_openais_response_and_sends_the_token_cap(
    service: Service, fake_openai: FakeOpenAI, configure: Configure
) -> None:
    configure(MAX_COMPLETION_TOKENS="300")

    with service.client() as client:
        response = client.responses.create(model="gpt-4o-mini", input="Hi")

    assert response.output_text == "Echo: Hi"
    assert response.usage is not None
    assert response.usage.total_tokens == 11
    sent = fake_openai.requests[-1]
    assert (sent.method, sent.path) == ("POST", "/v1/responses")
    assert sent.json == {"model": "gpt-4o-mini", "input": "Hi", "max_output_tokens": 300}


def test_stream_passes_openais_events_through_in_order(service: Service) -> None:
    with service.client() as client:
        events = list(client.responses.create(model="gpt-4o-mini", input="Hi there", stream=True))

    types = [event.type for event in events]
    assert types[0] == "response.created"
    assert types[-1] == "response.completed"
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert "".join(deltas) == "Echo: Hi there"


def test_stream_helper_assembles_the_final_response(service: Service) -> None:
    with (
        service.client() as client,
        client.responses.stream(model="gpt-4o-mini", input="Hi") as stream,
    ):
        text = "".join(
            event.delta for event in stream if event.type == "response.output_text.delta"
        )
        final = stream.get_final_response()

    assert text == final.output_text == "Echo: Hi"


def test_stream_broken_off_ends_with_an_error_event_the_sdk_raises(
    service: Service, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(
        Reply(stream=response_events(response_object("one two three")), break_after=5)
    )
    seen: list[str] = []

    with service.client() as client:
        stream = client.responses.create(model="gpt-4o-mini", input="Hi", stream=True)
        with pytest.raises(openai.APIError) as raised:
            seen.extend(event.type for event in stream)

    assert seen[0] == "response.created"
    assert len(seen) == 5
    assert raised.value.message == "OpenAI stopped answering midway. Try again."


def test_async_create_works(service: Service) -> None:
    import asyncio

    async def ask() -> str:
        async with service.async_client() as client:
            return (await client.responses.create(model="gpt-4o-mini", input="Hi")).output_text

    assert asyncio.run(ask()) == "Echo: Hi"


# --- stored responses and their owner ---------------------------------------------------------


def test_the_creator_retrieves_lists_and_deletes_its_response(
    service: Service, fake_openai: FakeOpenAI
) -> None:
    with service.client() as client:
        created = client.responses.create(model="gpt-4o-mini", input="Hi")
        again = client.responses.retrieve(created.id)
        items = client.responses.input_items.list(created.id)
        follow = client.responses.create(
            model="gpt-4o-mini", input="And?", previous_response_id=created.id
        )
        client.responses.delete(created.id)
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(created.id)

    assert again.id == created.id
    assert [item.type for item in items.data] == ["message"]
    assert follow.output_text == "Echo: And?"
    assert fake_openai.requests[3].json["previous_response_id"] == created.id
    assert created.id not in fake_openai.stored


def test_a_response_gone_at_openai_is_not_found_and_its_record_forgotten(
    service: Service, fake_openai: FakeOpenAI
) -> None:
    with service.client() as client:
        created = client.responses.create(model="gpt-4o-mini", input="Hi")
        # OpenAI no longer has it (expired there, or deleted with another of the owner's tools).
        for _ in range(3):
            fake_openai.enqueue(
                Reply(status=404, body=error_body("Gone at OpenAI", "invalid_request_error"))
            )
        with pytest.raises(openai.NotFoundError) as retrieved:
            client.responses.retrieve(created.id)
        with pytest.raises(openai.NotFoundError):
            client.responses.input_items.list(created.id)
        with pytest.raises(openai.NotFoundError):
            client.responses.delete(created.id)
        calls = len(fake_openai.requests)
        # The delete forgot the record: now the id is refused without calling OpenAI.
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(created.id)

    # The service's own 404, not OpenAI's text.
    assert retrieved.value.message == "Error code: 404 - No response found with that id."
    assert calls == len(fake_openai.requests) == 4


def test_cancel_reaches_openai_for_the_creator(service: Service, fake_openai: FakeOpenAI) -> None:
    with service.client() as client:
        created = client.responses.create(model="gpt-4o-mini", input="Hi")
        cancelled = client.responses.cancel(created.id)

    assert cancelled.status == "cancelled"
    assert fake_openai.requests[-1].path == f"/v1/responses/{created.id}/cancel"


def test_a_streamed_response_is_owned_too(service: Service) -> None:
    with service.client() as client:
        events = list(client.responses.create(model="gpt-4o-mini", input="Hi", stream=True))
        response_id = events[0].response.id  # type: ignore[union-attr]
        assert client.responses.retrieve(response_id).id == response_id


def test_another_callers_response_is_not_found_and_openai_is_not_called(
    two_keys: Service, fake_openai: FakeOpenAI
) -> None:
    with two_keys.client() as owner:
        created = owner.responses.create(model="gpt-4o-mini", input="secret")
    calls = len(fake_openai.requests)

    with two_keys.client(api_key=OTHER_KEY) as other:
        attempts: list[Callable[[], object]] = [
            lambda: other.responses.retrieve(created.id),
            lambda: other.responses.delete(created.id),
            lambda: other.responses.cancel(created.id),
            lambda: other.responses.input_items.list(created.id),
            lambda: other.responses.create(
                model="gpt-4o-mini", input="?", previous_response_id=created.id
            ),
        ]
        for attempt in attempts:
            with pytest.raises(openai.NotFoundError) as raised:
                attempt()
            assert raised.value.message.endswith("No response found with that id.")

    assert len(fake_openai.requests) == calls
    with two_keys.client() as owner:
        assert owner.responses.retrieve(created.id).output_text == "Echo: secret"


def test_an_unknown_id_is_not_found_without_calling_openai(
    service: Service, fake_openai: FakeOpenAI
) -> None:
    with service.client() as client, pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_made_up")

    assert fake_openai.requests == []


def test_an_unstored_response_is_nobodys(service: Service, fake_openai: FakeOpenAI) -> None:
    with service.client() as client:
        created = client.responses.create(model="gpt-4o-mini", input="Hi", store=False)
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(created.id)

    assert len(fake_openai.requests) == 1


# --- refused tools and parameters ----------------------------------------------------------

HOSTED_TOOLS: list[dict[str, Any]] = [
    {"type": "web_search"},
    {"type": "web_search_preview"},
    {"type": "file_search", "vector_store_ids": ["vs_1"]},
    {"type": "code_interpreter", "container": {"type": "auto"}},
    {"type": "image_generation"},
    {
        "type": "computer_use_preview",
        "display_width": 1,
        "display_height": 1,
        "environment": "linux",
    },
    {"type": "computer"},
    {"type": "mcp", "server_label": "x", "server_url": "https://attacker.example/mcp"},
    {"type": "local_shell"},
    {"type": "shell"},
    {"type": "apply_patch"},
    {"type": "tool_search"},
    {"type": "namespace", "name": "ns", "tools": [{"type": "web_search"}]},
]


@pytest.mark.parametrize("tool", HOSTED_TOOLS, ids=[str(tool["type"]) for tool in HOSTED_TOOLS])
def test_a_hosted_tool_is_refused_naming_it(
    service: Service, fake_openai: FakeOpenAI, tool: dict[str, Any]
) -> None:
    with service.client() as client, pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model="gpt-4o-mini", input="Hi", tools=[cast("Any", tool)])

    named = tool["tools"][0]["type"] if tool["type"] == "namespace" else tool["type"]
    assert f"'{named}'" in raised.value.message
    assert raised.value.param is not None
    assert raised.value.param.startswith("tools[0]")
    assert fake_openai.requests == []


def test_a_hosted_tool_passes_when_configured(
    service: Service, fake_openai: FakeOpenAI, configure: Configure
) -> None:
    configure(ALLOWED_HOSTED_TOOLS="web_search,file_search")

    with service.client() as client:
        client.responses.create(model="gpt-4o-mini", input="Hi", tools=[{"type": "web_search"}])

    assert fake_openai.requests[-1].json["tools"] == [{"type": "web_search"}]


def test_function_and_custom_tools_pass(service: Service, fake_openai: FakeOpenAI) -> None:
    tools: Any = [
        {"type": "function", "name": "now", "parameters": {}, "strict": False},
        {"type": "custom", "name": "grammar"},
    ]

    with service.client() as client:
        client.responses.create(model="gpt-4o-mini", input="Hi", tools=tools)

    assert fake_openai.requests[-1].json["tools"] == tools


REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "conversation": ({"conversation": "conv_123"}, "conversation"),
    "prompt": ({"prompt": {"id": "pmpt_1"}}, "prompt"),
    "background": ({"background": True}, "background"),
    "service_tier": ({"service_tier": "priority"}, "service_tier"),
    "max_output_tokens": ({"max_output_tokens": 5000}, "max_output_tokens"),
    "model": ({"model": "gpt-4.5-preview"}, "model"),
    "item_reference": ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
    "unknown": ({"base_url": "http://attacker.example"}, "base_url"),
    "null-tools": ({"tools": None}, "tools"),
}


@pytest.mark.parametrize(("extra", "param"), REFUSED.values(), ids=REFUSED.keys())
def test_a_refused_parameter_is_a_400_naming_it(
    service: Service, fake_openai: FakeOpenAI, extra: dict[str, Any], param: str
) -> None:
    body = {"model": "gpt-4o-mini", "input": "Hi", **extra}

    with service.client() as client, pytest.raises(openai.BadRequestError) as raised:
        client.post("/responses", body=body, cast_to=object)

    assert raised.value.param == param
    assert fake_openai.requests == []


def test_background_passes_when_configured(
    service: Service, fake_openai: FakeOpenAI, configure: Configure
) -> None:
    configure(ALLOW_BACKGROUND="true")

    with service.client() as client:
        created = client.responses.create(model="gpt-4o-mini", input="Hi", background=True)
        assert client.responses.retrieve(created.id).id == created.id

    assert fake_openai.requests[0].json["background"] is True
