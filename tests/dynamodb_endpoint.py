"""The test's moto DynamoDB on a loopback HTTP port, each call delayed: a table processes share.

Separate processes (the Lambda environments of tests/lambda_fleet.py) cannot see the tables
`mock_aws()` keeps in this process's memory; pointed at this endpoint (by
AWS_ENDPOINT_URL_DYNAMODB), their boto3 clients reach them over real HTTP, and moto answers as
it does in-process. Each call waits `latency` on its way in and again on its way out, as calls
to DynamoDB take milliseconds: the gap between a read and a write that depends on it widens to
twice that. moto then applies one request at a time, as DynamoDB applies each write to an item
atomically (moto's own check-then-write is not thread-safe). It records when each call came
and went, and after each write the item written: every state the table went through, in order.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, Self

from botocore.awsrequest import AWSPreparedRequest
from botocore.compat import HTTPHeaders
from moto.core.models import DEFAULT_ACCOUNT_ID, botocore_stubber
from moto.dynamodb.models import dynamodb_backends

from tests.fake_openai import LoopbackHandler, LoopbackServer

if TYPE_CHECKING:
    from types import TracebackType

# Where the requests are handed to moto: it serves DynamoDB at AWS's own address.
REGION = "us-east-1"
AWS_URL = f"https://dynamodb.{REGION}.amazonaws.com/"
WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem"})


@dataclass(frozen=True, slots=True)
class Write:
    """A write as moto applied it: the request, and the item it left (DynamoDB JSON)."""

    request: dict[str, Any]
    item_after: dict[str, Any]


class DynamoDBEndpoint:
    """moto over HTTP, with `latency` seconds each way; start it inside `mock_aws()`."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        # When each call arrived and was answered (monotonic clock), by operation.
        self.spans: defaultdict[str, list[tuple[float, float]]] = defaultdict(list)
        # In the order moto applied them.
        self.writes: list[Write] = []
        self._moto = threading.Lock()
        self._server = LoopbackServer(self._handler_class())
        self.url = self._server.url  # for AWS_ENDPOINT_URL_DYNAMODB

    def __enter__(self) -> Self:
        self._server.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.stop()

    def most_at_once(self, operation: str) -> int:
        """The most calls of `operation` that were in flight at the same moment."""
        spans = self.spans[operation]
        return max(
            (sum(start <= moment < end for start, end in spans) for moment, _ in spans),
            default=0,
        )

    def _answer(self, headers: HTTPHeaders, body: bytes) -> tuple[int, dict[str, str], bytes]:
        received_at = time.monotonic()
        time.sleep(self.latency)
        operation = headers.get("X-Amz-Target", "").rpartition(".")[2]
        with self._moto:
            answer = botocore_stubber.process_request(
                AWSPreparedRequest("POST", AWS_URL, headers, body, stream_output=False)
            )
            assert answer is not None, f"moto does not serve {operation}"
            if operation in WRITES:
                request: dict[str, Any] = json.loads(body)
                item = dynamodb_backends[DEFAULT_ACCOUNT_ID][REGION].get_item(
                    request["TableName"], request["Key"]
                )
                self.writes.append(Write(request, item.to_json()["Attributes"] if item else {}))
        time.sleep(self.latency)
        status, answer_headers, content = answer
        self.spans[operation].append((received_at, time.monotonic()))
        encoded = content.encode() if isinstance(content, str) else content
        return status, {str(k): str(v) for k, v in answer_headers.items()}, encoded

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class Handler(LoopbackHandler):
            def do_POST(self) -> None:
                headers = HTTPHeaders()
                for name, value in self.headers.items():
                    if name.lower() != "host":
                        headers[name] = value
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                status, answer_headers, content = endpoint._answer(headers, body)
                self.send_response(status)
                for name, value in answer_headers.items():
                    if name.lower() not in {"content-length", "connection"}:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

        return Handler
