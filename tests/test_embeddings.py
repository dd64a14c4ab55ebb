"""`POST /v1/embeddings` and `GET /v1/models/{id}` through the official SDK, uvicorn and Lambda."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.conftest import Configure
from tests.fake_openai import FakeOpenAI
from tests.sdk import Service


def test_embeddings_of_several_inputs_come_back_as_floats(
    service: Service, fake_openai: FakeOpenAI
) -> None:
    with service.client() as client:
        answer = client.embeddings.create(
            model="text-embedding-3-small", input=["one", "two"], dimensions=4
        )

    assert [item.embedding for item in answer.data] == [[0.5] * 4, [1.5] * 4]
    assert answer.usage.total_tokens == 8
    sent = fake_openai.requests[-1]
    assert sent.path == "/v1/embeddings"
    assert sent.json["input"] == ["one", "two"]
    assert sent.json["dimensions"] == 4


def test_base64_embeddings_are_passed_as_sent(service: Service) -> None:
    with service.client() as client:
        answer = client.embeddings.create(
            model="text-embedding-3-small", input="one", encoding_format="base64", dimensions=2
        )

    embedding: object = answer.data[0].embedding  # the SDK's type says floats; base64 is text
    assert embedding == "AAAAPwAAAD8="  # two 0.5s, little-endian float32


def test_token_arrays_are_embedded(service: Service, fake_openai: FakeOpenAI) -> None:
    with service.client() as client:
        client.embeddings.create(model="text-embedding-3-small", input=[[1, 2], [3]])

    assert fake_openai.requests[-1].json["input"] == [[1, 2], [3]]


def test_embedding_model_outside_the_allow_list_is_refused(
    service: Service, fake_openai: FakeOpenAI
) -> None:
    with service.client() as client, pytest.raises(openai.BadRequestError) as raised:
        client.embeddings.create(model="text-embedding-3-large", input="one")

    assert raised.value.param == "model"
    assert raised.value.code == "model_not_allowed"
    assert fake_openai.requests == []


def test_a_chat_model_is_not_an_embedding_model(service: Service, fake_openai: FakeOpenAI) -> None:
    with service.client() as client, pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="gpt-4o-mini", input="one")

    assert fake_openai.requests == []


@pytest.mark.parametrize(
    "extra",
    [
        {"input": ["x"] * 3},
        {"input": "x" * 11},
        {"input": [list(range(11))]},
        {"input": ""},
        {"input": []},
        {"dimensions": 0},
        {"encoding_format": "int8"},
        {"frobnicate": True},
    ],
    ids=["count", "chars", "tokens", "empty", "no-inputs", "dimensions", "format", "unknown"],
)
def test_input_over_the_bounds_or_invalid_is_refused(
    service: Service, fake_openai: FakeOpenAI, configure: Configure, extra: dict[str, Any]
) -> None:
    configure(MAX_EMBEDDING_INPUTS="2", MAX_EMBEDDING_INPUT_CHARS="10")
    body = {"input": "fine", **extra}

    with service.client() as client, pytest.raises(openai.BadRequestError) as raised:
        client.post("/embeddings", body={"model": "text-embedding-3-small", **body}, cast_to=object)

    assert raised.value.param is not None
    assert raised.value.param.split(".")[0] in {*extra, "input"}
    assert fake_openai.requests == []


def test_retrieve_names_an_allowed_model(service: Service, configure: Configure) -> None:
    configure(ALLOWED_MODELS="gpt-4o-mini,gpt-4.1")

    with service.client() as client:
        chat = client.models.retrieve("gpt-4.1")
        embedding = client.models.retrieve("text-embedding-3-small")

    assert (chat.id, chat.object) == ("gpt-4.1", "model")
    assert embedding.id == "text-embedding-3-small"


def test_retrieve_of_another_model_is_not_found(service: Service, fake_openai: FakeOpenAI) -> None:
    with service.client() as client, pytest.raises(openai.NotFoundError) as raised:
        client.models.retrieve("gpt-4.5-preview")

    assert raised.value.code == "model_not_found"
    assert fake_openai.requests == []
