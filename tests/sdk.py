"""The official `openai` SDK pointed at the service: under uvicorn, or through Lambda."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx2
import pytest
from openai import AsyncOpenAI, OpenAI

from tests.conftest import CLIENT_API_KEY
from tests.lambda_transport import BASE_URLS, EventSource, LambdaTransport

if TYPE_CHECKING:
    from tests.conftest import LambdaRuntime, Serve
    from tests.fake_openai import FakeOpenAI


@dataclass
class Service:
    """Where the SDK sends requests, and how: over loopback HTTP, or as Lambda events."""

    base_url: str
    transport: LambdaTransport | None = None

    @classmethod
    def served(cls, url: str) -> Service:
        """The app under uvicorn at `url`."""
        return cls(base_url=f"{url}/v1")

    @classmethod
    def on_lambda(cls, runtime: LambdaRuntime, source: EventSource) -> Service:
        """The Lambda handler, sent events from `source`."""
        return cls(base_url=BASE_URLS[source], transport=LambdaTransport(runtime, source))

    def client(self, api_key: str = CLIENT_API_KEY) -> OpenAI:
        """A sync SDK client with the given client key."""
        http_client = httpx2.Client(transport=self.transport) if self.transport else None
        return OpenAI(
            base_url=self.base_url, api_key=api_key, max_retries=0, http_client=http_client
        )

    def async_client(self, api_key: str = CLIENT_API_KEY) -> AsyncOpenAI:
        """An async SDK client with the given client key."""
        http_client = httpx2.AsyncClient(transport=self.transport) if self.transport else None
        return AsyncOpenAI(
            base_url=self.base_url, api_key=api_key, max_retries=0, http_client=http_client
        )


def service_for(request: pytest.FixtureRequest) -> Service:
    """For a fixture parametrized with "uvicorn" or "lambda": the app there (REST events)."""
    if request.param == "uvicorn":
        serve: Serve = request.getfixturevalue("serve")
        return Service.served(serve())
    runtime: LambdaRuntime = request.getfixturevalue("lambda_runtime")
    return Service.on_lambda(runtime, "rest-api")


# A fixture for every test module (conftest.py loads this module as a plugin).
@pytest.fixture(params=["uvicorn", "lambda"])
def service(request: pytest.FixtureRequest, fake_openai: FakeOpenAI) -> Service:
    """The service under uvicorn, or the Lambda handler behind the REST API."""
    return service_for(request)
