"""The OpenAI Agents SDK with its default model provider (the Responses API) and default model.

Against uvicorn and the Lambda handler; OpenAI is the loopback fake. Tracing is off, so the
SDK sends nothing anywhere else.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from agents import (
    Agent,
    Runner,
    function_tool,
    set_default_openai_client,
    set_tracing_disabled,
)
from agents.models import _openai_shared
from agents.models.default_models import get_default_model

from tests.conftest import Configure
from tests.fake_openai import FakeOpenAI, Reply, response_object
from tests.sdk import Service, service_for


@pytest.fixture(params=["uvicorn", "lambda"])
def service(
    request: pytest.FixtureRequest, fake_openai: FakeOpenAI, configure: Configure
) -> Iterator[Service]:
    """The service, allowing the SDK's default model; the SDK's globals restored after."""
    configure(ALLOWED_MODELS=f"gpt-4o-mini,{get_default_model()}")
    before = _openai_shared.get_default_openai_client()
    set_tracing_disabled(True)
    yield service_for(request)
    set_tracing_disabled(False)
    if before is not None:
        set_default_openai_client(before, use_for_tracing=False)
    else:
        _openai_shared.set_default_openai_client(None)  # type: ignore[arg-type]


def run_agent(service: Service, agent: Agent[Any], prompt: str) -> object:
    """The agent's final output for `prompt`, its SDK client pointed at the service."""

    async def run() -> object:
        async with service.async_client() as client:
            set_default_openai_client(client, use_for_tracing=False)
            result = await Runner.run(agent, prompt)
        return result.final_output

    return asyncio.run(run())


def test_an_agent_gets_the_answer_through_the_responses_api(
    service: Service, fake_openai: FakeOpenAI
) -> None:
    agent = Agent(name="Assistant", instructions="Answer briefly.")

    assert run_agent(service, agent, "Hello there") == "Echo: Hello there"
    sent = fake_openai.requests[-1]
    assert (sent.method, sent.path) == ("POST", "/v1/responses")
    assert sent.json["model"] == get_default_model()
    assert sent.json["instructions"] == "Answer briefly."


def test_an_agent_calls_a_function_tool_and_answers_with_its_result(
    service: Service, fake_openai: FakeOpenAI
) -> None:
    calls: list[str] = []

    @function_tool
    def weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return f"Sunny in {city}"

    asks_for_the_tool = response_object("")
    asks_for_the_tool["output"] = [
        {
            "id": "fc_fake",
            "type": "function_call",
            "call_id": "call_1",
            "name": "weather",
            "arguments": json.dumps({"city": "Oslo"}),
            "status": "completed",
        }
    ]
    fake_openai.enqueue(Reply(body=asks_for_the_tool), Reply(body=response_object("Sunny.")))
    agent = Agent(name="Assistant", tools=[weather])

    assert run_agent(service, agent, "Weather in Oslo?") == "Sunny."
    assert calls == ["Oslo"]
    first, second = fake_openai.requests[-2:]
    assert [tool["name"] for tool in first.json["tools"]] == ["weather"]
    outputs = [item for item in second.json["input"] if item.get("type") == "function_call_output"]
    assert outputs == [
        {"type": "function_call_output", "call_id": "call_1", "output": "Sunny in Oslo"}
    ]
