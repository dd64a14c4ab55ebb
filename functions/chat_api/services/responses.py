"""OpenAI's Responses API behind the service's guards, with stored responses owned per caller.

OpenAI stores responses per organisation, and every caller of this service shares the
owner's: the service records which caller created each stored response, and answers any
other caller (GET, DELETE, cancel, input_items, `previous_response_id`) with the 404 of an
unknown id, without calling OpenAI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import openai
from openai.types.responses import Response, ResponseItemList

from chat_api.exceptions import (
    InvalidRequest,
    NotFound,
    UpstreamInvalidResponse,
)
from chat_api.services.budget import response_bound
from chat_api.services.completions import find_unsendable, refusal_is_the_clients
from chat_api.services.guards import (
    check_enabled,
    check_model,
    check_service_tier,
    check_token_cap,
    not_allowed,
)
from chat_api.services.relay import guarded_events, to_usage
from chat_api.store.base import OwnedResponse
from chat_api.store.rules import RESPONSE_OWNERSHIP_SECONDS, owns_response

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Awaitable, Callable

    from openai import AsyncOpenAI, AsyncStream
    from openai.types.responses import ResponseStreamEvent

    from chat_api.compat_schemas import ResponseCreateRequest
    from chat_api.config import Settings
    from chat_api.services.budget import Budget, Meter
    from chat_api.services.upstream import Upstream
    from chat_api.store.base import SessionStore

# Tools the client's own code runs: OpenAI only names the call, nothing is spent or reached.
CLIENT_TOOLS = frozenset({"function", "custom"})
FINAL_EVENTS = frozenset({"response.completed", "response.failed", "response.incomplete", "error"})


class ResponseNotFound(NotFound):
    """No such response for this caller: never created here, deleted, or another caller's."""

    default_message = "No response found with that id."


@dataclass(frozen=True, slots=True)
class Responses:
    """The Responses API for one caller: create, read, cancel, delete, list input items."""

    upstream: Upstream
    store: SessionStore
    settings: Settings
    caller: str
    clock: Callable[[], float]
    budget: Budget

    def params(self, request: ResponseCreateRequest) -> dict[str, Any]:
        """The parameters sent to OpenAI, or `InvalidRequest` / 404 if they may not be."""
        settings = self.settings
        check_model(request.model, settings.allowed_models)
        check_token_cap(
            "max_output_tokens", request.max_output_tokens, settings.max_completion_tokens
        )
        check_service_tier(request.service_tier, settings)
        check_enabled(
            "background", bool(request.background), settings.allow_background, "ALLOW_BACKGROUND"
        )
        if request.conversation is not None:
            raise not_allowed("conversation", "'conversation' is not supported on this service.")
        if request.prompt is not None:
            # A stored prompt brings its own model and tools, past every check here.
            raise not_allowed("prompt", "'prompt' is not supported on this service.")
        _check_tools(request.tools or [], settings.allowed_hosted_tools, "tools")
        _check_input(request.input)
        if request.previous_response_id is not None:
            self._owned(request.previous_response_id)
        params = request.model_dump(exclude_unset=True, exclude={"stream"})
        if unsendable := find_unsendable(params):
            field, problem = unsendable
            raise InvalidRequest(
                f"Invalid field '{field}': {problem}", param=field, code="invalid_value"
            )
        # Without a limit the model may write until its own maximum, at the owner's expense.
        params.setdefault("max_output_tokens", settings.max_completion_tokens)
        self.upstream.log.model = request.model
        return params

    async def create(self, request: ResponseCreateRequest) -> Response:
        """One whole response; a stored one is recorded as this caller's."""
        params = self.params(request)

        async def create(client: AsyncOpenAI) -> Response:
            return cast("Response", await client.responses.create(**params))

        async with self.budget.spending(lambda: response_bound(params)) as meter:
            with refusal_is_the_clients():
                response = await self.upstream.call(create)
            meter.settle(to_usage(response.usage))
        self._own(response, params)
        self._note(response)
        return response

    async def open_stream(
        self, request: ResponseCreateRequest
    ) -> AsyncGenerator[ResponseStreamEvent]:
        """Start a streamed response: failures before the first byte raise here, as usual."""
        params = self.params(request)

        async def create(client: AsyncOpenAI) -> AsyncStream[ResponseStreamEvent]:
            return cast(
                "AsyncStream[ResponseStreamEvent]",
                await client.responses.create(stream=True, **params),
            )

        meter = await self.budget.admit(lambda: response_bound(params))
        async with meter.settling_on_failure():
            with refusal_is_the_clients():
                stream = await self.upstream.call(create, streamed=True)
        meter.answering()
        return self._relay(stream, params, meter)

    async def _relay(
        self, stream: AsyncStream[ResponseStreamEvent], params: dict[str, Any], meter: Meter
    ) -> AsyncGenerator[ResponseStreamEvent]:
        """OpenAI's events as sent, each within the attempt timeout and the deadline.

        The meter settles at the usage of the last response event (else its reservation).
        """
        finished = False
        owned = False
        async with meter, stream:
            async for event in guarded_events(stream, self.upstream):
                response = getattr(event, "response", None)
                if isinstance(response, Response):
                    if not owned:
                        # Before the client learns the id, so it is never another's meanwhile.
                        self._own(response, params)
                        owned = True
                    self._note(response)
                    meter.settle(to_usage(response.usage))
                finished = finished or event.type in FINAL_EVENTS
                yield event
        if not finished:
            raise UpstreamInvalidResponse("OpenAI's stream ended before the response finished.")

    async def retrieve(self, response_id: str) -> Response:
        """A stored response of this caller's."""
        found = await self._call_owned(
            response_id, lambda client: client.responses.retrieve(response_id)
        )
        return self._found(found)

    async def cancel(self, response_id: str) -> Response:
        """Cancel a background response of this caller's."""
        with refusal_is_the_clients():
            found = await self._call_owned(
                response_id, lambda client: client.responses.cancel(response_id)
            )
        return self._found(found)

    async def delete(self, response_id: str) -> None:
        """Delete a stored response of this caller's, at OpenAI and here."""

        async def delete(client: AsyncOpenAI) -> bool:
            await client.responses.delete(response_id)
            return True

        deleted = await self._call_owned(response_id, delete)
        self.store.forget_response(response_id)
        if deleted is None:
            raise ResponseNotFound

    async def input_items(self, response_id: str, query: dict[str, Any]) -> ResponseItemList:
        """A page of a stored response's input items (OpenAI's paging parameters as sent)."""
        found = await self._call_owned(
            response_id,
            lambda client: client.get(
                f"/responses/{response_id}/input_items",
                cast_to=ResponseItemList,
                options={"params": query},
            ),
        )
        if found is None:
            raise ResponseNotFound
        return found

    async def _call_owned[R](
        self, response_id: str, call: Callable[[AsyncOpenAI], Awaitable[R]]
    ) -> R | None:
        """`call` for a response of this caller's; None if OpenAI has no such response."""
        self._owned(response_id)

        async def call_unless_missing(client: AsyncOpenAI) -> R | None:
            try:
                return await call(client)
            except openai.NotFoundError:
                return None

        return await self.upstream.call(call_unless_missing)

    def _owned(self, response_id: str) -> None:
        """404, before any call to OpenAI, unless the caller created this response."""
        record = self.store.response_owner(response_id)
        if not owns_response(record, self.caller, self.clock()):
            raise ResponseNotFound

    def _own(self, response: Response, params: dict[str, Any]) -> None:
        """Record a response OpenAI keeps (store is its default) as this caller's."""
        if params.get("store") is False:
            return
        now = self.clock()
        record = OwnedResponse(response.id, self.caller, now + RESPONSE_OWNERSHIP_SECONDS)
        self.store.record_response(record, now)

    def _note(self, response: Response) -> None:
        log = self.upstream.log
        log.model = response.model or log.model
        log.usage = to_usage(response.usage) or log.usage

    def _found(self, response: Response | None) -> Response:
        if response is None:
            raise ResponseNotFound
        self._note(response)
        return response


def _check_tools(tools: list[dict[str, Any]], allowed: list[str], path: str) -> None:
    """Hosted tools (web_search, mcp...) only if ALLOWED_HOSTED_TOOLS lists them."""
    for index, tool in enumerate(tools):
        kind = str(tool.get("type"))
        if kind == "namespace":
            _check_tools(list(tool.get("tools") or []), allowed, f"{path}[{index}].tools")
        elif kind not in CLIENT_TOOLS and kind not in allowed:
            raise not_allowed(
                f"{path}[{index}]",
                f"The hosted tool '{kind}' is not allowed on this service (ALLOWED_HOSTED_TOOLS).",
            )


def _check_input(items: str | list[dict[str, Any]] | None) -> None:
    """No `item_reference`: it reads an item stored at OpenAI, which may be another caller's."""
    if not isinstance(items, list):
        return
    for index, item in enumerate(items):
        if item.get("type") == "item_reference":
            raise not_allowed(
                f"input[{index}]",
                "Input items of type 'item_reference' are not supported on this service: "
                "use previous_response_id.",
            )
