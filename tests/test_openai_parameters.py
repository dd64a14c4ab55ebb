"""Chat Completions parameters: all of OpenAI's pass, the costly ones only as configured."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.conftest import Configure
from tests.fake_openai import FakeOpenAI
from tests.sdk import Service

HI: list[Any] = [{"role": "user", "content": "Hi"}]


# What frameworks fill in: OpenAI's own parameters at harmless values.
ORDINARY: dict[str, Any] = {
    "n": 1,
    "logprobs": True,
    "top_logprobs": 2,
    "logit_bias": {"50256": -100},
    "store": False,
    "metadata": {"app": "tests"},
    "reasoning_effort": "low",
    "verbosity": "low",
    "prompt_cache_key": "tenant-1",
    "prompt_cache_options": {"mode": "implicit"},
    "prompt_cache_retention": "24h",
    "safety_identifier": "user-hash",
    "service_tier": "default",
    "modalities": ["text"],
    "moderation": {"model": "omni-moderation-latest"},
    "functions": [{"name": "now", "parameters": {}}],
    "function_call": "auto",
    "max_completion_tokens": 10,
}
# Where OpenAI allows null, null means its default and always passes.
NULLS = [
    "n",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "store",
    "metadata",
    "reasoning_effort",
    "verbosity",
    "prompt_cache_key",
    "prompt_cache_retention",
    "safety_identifier",
    "service_tier",
    "modalities",
    "audio",
    "prediction",
    "moderation",
]


def test_openais_ordinary_parameters_pass_through_unchanged(
    service: Service, fake_openai: FakeOpenAI
) -> None:
    with service.client() as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=HI, extra_body=ORDINARY)

    assert fake_openai.requests[-1].json == {"model": "gpt-4o-mini", "messages": HI, **ORDINARY}


def test_logprobs_false_passes(service: Service, fake_openai: FakeOpenAI) -> None:
    with service.client() as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=HI, logprobs=False)

    assert fake_openai.requests[-1].json["logprobs"] is False


def test_null_passes_wherever_openai_allows_it(service: Service, fake_openai: FakeOpenAI) -> None:
    nulls = dict.fromkeys(NULLS)

    with service.client() as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=HI, extra_body=nulls)

    sent = fake_openai.requests[-1].json
    assert {name: sent[name] for name in NULLS} == nulls


@pytest.mark.parametrize("name", ["web_search_options", "functions", "function_call", "tools"])
def test_null_is_refused_where_openai_refuses_it(
    service: Service, fake_openai: FakeOpenAI, name: str
) -> None:
    with service.client() as client, pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=HI, extra_body={name: None})

    assert raised.value.param == name
    assert fake_openai.requests == []


AUDIO = {"voice": "alloy", "format": "wav"}
COSTLY: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
    "n": ({"n": 3}, {"MAX_CHOICES": "3"}),
    "service_tier": ({"service_tier": "priority"}, {"ALLOWED_SERVICE_TIERS": "auto,priority"}),
    "flex": ({"service_tier": "flex"}, {"ALLOWED_SERVICE_TIERS": "flex"}),
    "modalities": ({"modalities": ["text", "audio"]}, {"ALLOW_AUDIO_OUTPUT": "true"}),
    "audio": ({"audio": AUDIO}, {"ALLOW_AUDIO_OUTPUT": "true"}),
    "web_search_options": ({"web_search_options": {}}, {"ALLOW_WEB_SEARCH": "true"}),
    "prediction": (
        {"prediction": {"type": "content", "content": "draft"}},
        {"ALLOW_PREDICTION": "true"},
    ),
}


@pytest.mark.parametrize(("extra", "setting"), COSTLY.values(), ids=COSTLY.keys())
def test_costly_parameter_is_refused_by_default_naming_it(
    service: Service, fake_openai: FakeOpenAI, extra: dict[str, Any], setting: dict[str, str]
) -> None:
    with service.client() as client, pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=HI, extra_body=extra)

    (name,) = extra
    assert raised.value.param == name
    assert raised.value.code == "parameter_not_allowed"
    assert fake_openai.requests == []


@pytest.mark.parametrize(("extra", "setting"), COSTLY.values(), ids=COSTLY.keys())
def test_costly_parameter_passes_when_configured(
    service: Service,
    fake_openai: FakeOpenAI,
    configure: Configure,
    extra: dict[str, Any],
    setting: dict[str, str],
) -> None:
    configure(**setting)

    with service.client() as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=HI, extra_body=extra)

    sent = fake_openai.requests[-1].json
    assert {name: sent[name] for name in extra} == extra


def test_more_choices_than_configured_are_refused(
    service: Service, fake_openai: FakeOpenAI, configure: Configure
) -> None:
    configure(MAX_CHOICES="2")

    with service.client() as client, pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=HI, n=3)

    assert raised.value.param == "n"
    assert fake_openai.requests == []


@pytest.mark.parametrize("name", ["base_url", "frobnicate", "api_key"])
def test_a_parameter_openai_does_not_have_is_refused_naming_it(
    service: Service, fake_openai: FakeOpenAI, name: str
) -> None:
    with service.client() as client, pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=HI, extra_body={name: 1})

    body: Any = raised.value.body
    assert body["message"] == f"Unrecognized request argument supplied: {name}"
    assert raised.value.param == name
    assert fake_openai.requests == []


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"top_logprobs": 21}, "top_logprobs"),
        ({"logit_bias": {"1": 101}}, "logit_bias.1"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"service_tier": "cheapest"}, "service_tier"),
    ],
)
def test_a_value_openai_would_refuse_is_refused_naming_the_parameter(
    service: Service, fake_openai: FakeOpenAI, extra: dict[str, Any], param: str
) -> None:
    with service.client() as client, pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=HI, extra_body=extra)

    assert raised.value.param == param
    assert fake_openai.requests == []


def test_a_streamed_completion_sends_openai_what_the_sdks_create_would(
    service: Service, fake_openai: FakeOpenAI
) -> None:
    # The service posts streamed calls past the SDK's parameter transform (services/relay.py):
    # what reaches OpenAI must be what `create` itself sends for the same parameters.
    params: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}], "name": "ada"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "now", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "noon"},
        ],
        "tools": [{"type": "function", "function": {"name": "now", "parameters": {}}}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": {"type": "object"}},
        },
        "stream_options": {"include_usage": True},
        **ORDINARY,
    }
    with service.client() as client:
        list(client.chat.completions.create(stream=True, **params))
    through_the_service = fake_openai.requests[-1].json

    with openai.OpenAI(base_url=fake_openai.base_url, api_key="sk-direct", max_retries=0) as sdk:
        list(sdk.chat.completions.create(stream=True, **params))

    assert through_the_service == fake_openai.requests[-1].json
