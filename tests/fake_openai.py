"""A real loopback HTTP server that speaks OpenAI's wire protocol: chat completions,
the Responses API (its event stream and stored responses) and embeddings.

Tests script its replies (status, body, headers, delay, dropped connection, or a stream of
Server-Sent Events paced and possibly broken off) so that the real `openai` client, with its
retries and timeouts, talks to it exactly as it would to OpenAI.
"""

from __future__ import annotations

import base64
import json
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeGuard


@dataclass
class Reply:
    """One scripted answer. Defaults to a normal completion that echoes the last message."""

    status: int = 200
    body: dict[str, Any] | bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop_connection: bool = False
    # Stream these `data:` events (then `data: [DONE]`) instead of a JSON body. A request with
    # `"stream": true` gets an echo stream by default.
    stream: list[dict[str, Any] | bytes] | None = None
    chunk_delay: float = 0.0
    # Cut the connection after this many events, mid-body, as a failing upstream would.
    break_after: int | None = None


@dataclass
class RecordedRequest:
    """What the server received: for asserting on the key, the model and the messages sent."""

    method: str
    path: str
    headers: dict[str, str]
    json: dict[str, Any]
    # When the request arrived (monotonic clock): tests check the spacing of retries with it.
    received_at: float = field(default_factory=time.monotonic)
    # When each streamed event left the server (monotonic clock).
    events_sent_at: list[float] = field(default_factory=list)


def completion(content: str, model: str = "gpt-4o-mini", prompt_tokens: int = 9) -> dict[str, Any]:
    """A chat.completion body as OpenAI returns it."""
    completion_tokens = len(content.split())
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def chunk(
    content: str | None = None,
    *,
    role: str | None = None,
    finish_reason: str | None = None,
    model: str = "gpt-4o-mini",
) -> dict[str, Any]:
    """A chat.completion.chunk body with one choice, as OpenAI streams it."""
    delta: dict[str, Any] = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def stream_of(
    text: str, model: str = "gpt-4o-mini", *, include_usage: bool = False, prompt_tokens: int = 9
) -> list[dict[str, Any] | bytes]:
    """The chunks OpenAI streams for `text`: role, one per word, finish, and usage if asked."""
    words = text.split(" ")
    pieces = [word if i == 0 else f" {word}" for i, word in enumerate(words)]
    events: list[dict[str, Any] | bytes] = [chunk("", role="assistant", model=model)]
    events += [chunk(piece, model=model) for piece in pieces]
    events.append(chunk(finish_reason="stop", model=model))
    if include_usage:
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(words),
            "total_tokens": prompt_tokens + len(words),
        }
        events.append({**chunk(model=model), "choices": [], "usage": usage})
    return events


def response_object(
    text: str,
    model: str = "gpt-4o-mini",
    *,
    response_id: str | None = None,
    status: str = "completed",
    input_tokens: int = 9,
) -> dict[str, Any]:
    """A Responses API `response` object with one output message, as OpenAI returns it."""
    output_tokens = len(text.split())
    return {
        "id": response_id or f"resp_{uuid.uuid4().hex}",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": model,
        "output": [
            {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ]
        if text
        else [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        },
    }


def response_events(response: dict[str, Any]) -> list[dict[str, Any] | bytes]:
    """The events OpenAI streams for `response`: created, one delta per word, completed."""
    text = "".join(part["text"] for item in response["output"] for part in item.get("content", []))
    pending = {**response, "status": "in_progress", "output": [], "usage": None}
    item = {**response["output"][0], "status": "in_progress", "content": []}
    part = {"type": "output_text", "text": "", "annotations": []}
    words = text.split(" ")
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": pending},
        {"type": "response.in_progress", "response": pending},
        {"type": "response.output_item.added", "output_index": 0, "item": item},
        {
            "type": "response.content_part.added",
            "item_id": item["id"],
            "output_index": 0,
            "content_index": 0,
            "part": part,
        },
    ]
    events += [
        {
            "type": "response.output_text.delta",
            "item_id": item["id"],
            "output_index": 0,
            "content_index": 0,
            "delta": word if i == 0 else f" {word}",
            "logprobs": [],
        }
        for i, word in enumerate(words)
    ]
    done_part = {**part, "text": text}
    events += [
        {
            "type": "response.output_text.done",
            "item_id": item["id"],
            "output_index": 0,
            "content_index": 0,
            "text": text,
            "logprobs": [],
        },
        {
            "type": "response.content_part.done",
            "item_id": item["id"],
            "output_index": 0,
            "content_index": 0,
            "part": done_part,
        },
        {"type": "response.output_item.done", "output_index": 0, "item": response["output"][0]},
        {"type": "response.completed", "response": response},
    ]
    return [{**event, "sequence_number": number} for number, event in enumerate(events)]


def embeddings_body(payload: dict[str, Any]) -> dict[str, Any]:
    """An embeddings list for each input (of `dimensions` floats), in the format asked for."""
    raw = payload.get("input", "")
    inputs = [raw] if isinstance(raw, str) or (raw and isinstance(raw[0], int)) else raw
    dimensions = payload.get("dimensions", 3)
    data = []
    for index, _ in enumerate(inputs):
        vector = [0.5 + index] * dimensions
        encoded: Any = vector
        if payload.get("encoding_format") == "base64":
            encoded = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    return {
        "object": "list",
        "data": data,
        "model": payload.get("model", "text-embedding-3-small"),
        "usage": {"prompt_tokens": 4 * len(inputs), "total_tokens": 4 * len(inputs)},
    }


def error_body(message: str, error_type: str, code: str | None = None) -> dict[str, Any]:
    """An error body in OpenAI's format."""
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


class LoopbackServer(ThreadingHTTPServer):
    """A fake's HTTP server on a free loopback port, serving from a thread of its own."""

    # socketserver listens with a backlog of 5: tests that send 20 requests at once need more.
    request_queue_size = 64
    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def url(self) -> str:
        """Where it listens: `http://127.0.0.1:<port>`."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        """Serve from now on."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.shutdown()
        self.server_close()


class LoopbackHandler(BaseHTTPRequestHandler):
    """A fake's request handler: HTTP/1.1 connections kept open, answers sent at once, quiet."""

    protocol_version = "HTTP/1.1"
    # Without it every response waits on Nagle's algorithm (~40 ms a call).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""


class FakeOpenAI:
    """The server, its scripted replies and the requests it received."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.requests: list[RecordedRequest] = []
        # Responses it created with `store` (OpenAI's default), by id, with their input.
        self.stored: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
        self._lock = threading.Lock()
        self._server = LoopbackServer(self._handler_class())

    @property
    def base_url(self) -> str:
        return f"{self._server.url}/v1"

    def start(self) -> FakeOpenAI:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def enqueue(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order, then with the default."""
        with self._lock:
            self.replies.extend(replies)

    def _next_reply(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            return self.replies.pop(0) if self.replies else Reply()

    def _default_body(self, request: RecordedRequest) -> dict[str, Any]:
        """What OpenAI would answer `request` with, for each API the fake speaks."""
        path, payload = request.path.split("?")[0], request.json
        if path == "/v1/embeddings":
            return embeddings_body(payload)
        if path == "/v1/responses":
            items = _input_items(payload)
            body = response_object(_echo(items), payload.get("model", "gpt"))
            if payload.get("store", True):
                with self._lock:
                    self.stored[body["id"]] = (body, items)
            return body
        if path.startswith("/v1/responses/"):
            return self._stored_answer(request.method, path.split("/")[3:])
        return _default_completion(payload)

    def _stored_answer(self, method: str, parts: list[str]) -> dict[str, Any]:
        """GET, DELETE, cancel and input_items of a stored response."""
        response_id = parts[0]
        with self._lock:
            if response_id not in self.stored:
                return error_body("No response found", "invalid_request_error")
            body, items = self.stored[response_id]
            if method == "DELETE":
                del self.stored[response_id]
                return {"id": response_id, "object": "response", "deleted": True}
        if parts[1:] == ["input_items"]:
            return {
                "object": "list",
                "data": items[::-1],
                "first_id": items[-1]["id"],
                "last_id": items[0]["id"],
                "has_more": False,
            }
        if parts[1:] == ["cancel"]:
            return {**body, "status": "cancelled"}
        return body

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(LoopbackHandler):
            def do_GET(self) -> None:
                self._answer({})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                raw = self.rfile.read(length) if length else b"{}"
                self._answer(json.loads(raw or b"{}"))

            def do_DELETE(self) -> None:
                self._answer({})

            def _answer(self, payload: dict[str, Any]) -> None:
                recorded = RecordedRequest(
                    method=self.command,
                    path=self.path,
                    headers={key.lower(): value for key, value in self.headers.items()},
                    json=payload,
                )
                reply = fake._next_reply(recorded)
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.drop_connection:
                    self._drop()
                    return
                if reply.stream is None and payload.get("stream") and _is_completion(reply.body):
                    # A whole completion scripted for a streamed call: sent as OpenAI streams it.
                    reply = replace(reply, stream=_as_stream(reply.body, payload), body=None)
                if reply.stream is not None or (payload.get("stream") and reply.body is None):
                    self._stream(reply, payload, recorded)
                    return
                body = reply.body if reply.body is not None else fake._default_body(recorded)
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(reply.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def _stream(
                self, reply: Reply, payload: dict[str, Any], recorded: RecordedRequest
            ) -> None:
                responses = recorded.path.startswith("/v1/responses")
                if reply.stream is not None:
                    events = reply.stream
                elif responses:
                    events = response_events(fake._default_body(recorded))
                else:
                    events = _default_stream(payload)
                self.send_response(reply.status)
                self.send_header("content-type", "text/event-stream; charset=utf-8")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                # The Responses API names each event and sends no [DONE].
                try:
                    for number, event in enumerate(events if responses else [*events, b"[DONE]"]):
                        if number == reply.break_after:
                            self._drop()
                            return
                        if number and reply.chunk_delay:
                            time.sleep(reply.chunk_delay)
                        data = event if isinstance(event, bytes) else json.dumps(event).encode()
                        name = b""
                        if responses and isinstance(event, dict):
                            name = f"event: {event['type']}\n".encode()
                        self._write_chunk(name + b"data: " + data + b"\n\n")
                        recorded.events_sent_at.append(time.monotonic())
                    self._write_chunk(b"")
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def _write_chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def _drop(self) -> None:
                self.close_connection = True
                self.connection.shutdown(2)

        return Handler


def _is_completion(body: object) -> TypeGuard[dict[str, Any]]:
    return isinstance(body, dict) and body.get("object") == "chat.completion"


def _as_stream(body: dict[str, Any], payload: dict[str, Any]) -> list[dict[str, Any] | bytes]:
    """The chunks OpenAI streams for the completion `body`: role, content, finish, usage."""
    model = body["model"]
    choice = body["choices"][0]
    events: list[dict[str, Any] | bytes] = [chunk("", role="assistant", model=model)]
    if choice["message"].get("content") is not None:
        events.append(chunk(choice["message"]["content"], model=model))
    events.append(chunk(finish_reason=choice["finish_reason"], model=model))
    if (payload.get("stream_options") or {}).get("include_usage"):
        events.append({**chunk(model=model), "choices": [], "usage": body["usage"]})
    return events


def _default_stream(payload: dict[str, Any]) -> list[dict[str, Any] | bytes]:
    messages = payload.get("messages") or [{"content": ""}]
    include_usage = bool((payload.get("stream_options") or {}).get("include_usage"))
    return stream_of(
        f"Echo: {messages[-1].get('content', '')}",
        payload.get("model", "gpt"),
        include_usage=include_usage,
    )


def _default_completion(payload: dict[str, Any]) -> dict[str, Any]:
    messages = payload.get("messages") or [{"content": ""}]
    return completion(f"Echo: {messages[-1].get('content', '')}", payload.get("model", "gpt"))


def _input_items(payload: dict[str, Any]) -> list[dict[str, Any]]:
    raw = payload.get("input", "")
    if isinstance(raw, str):
        raw = [{"role": "user", "content": raw}]
    items = []
    for index, item in enumerate(raw):
        content = item.get("content", "")
        if isinstance(content, str):
            content = [{"type": "input_text", "text": content}]
        items.append(
            {
                "id": f"msg_in{index}",
                "type": "message",
                "status": "completed",
                **item,
                "content": content,
            }
        )
    return items


def _echo(items: list[dict[str, Any]]) -> str:
    last = items[-1].get("content", "") if items else ""
    if isinstance(last, list):
        last = " ".join(part.get("text", "") for part in last)
    return f"Echo: {last}"
