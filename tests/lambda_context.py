"""A dataclass standing in for the context object Lambda passes to the handler.

Standard library only: the fresh-container probe of test_handler imports it into a process
that must load nothing the handler does not (conftest pulls in boto3 and moto).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mangum.types import LambdaCognitoIdentity, LambdaMobileClientContext


@dataclass
class LambdaContext:
    """The context's attributes and `get_remaining_time_in_millis`, with a time budget to set."""

    function_name: str = "ChatFunction"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:ChatFunction"
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/ChatFunction"
    log_stream_name: str = "2026/01/01/[$LATEST]0123456789abcdef"
    identity: LambdaCognitoIdentity | None = None
    client_context: LambdaMobileClientContext | None = None
    # API Gateway's integration limit: a fresh invocation has about this long.
    remaining_ms: int = 29_000

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before Lambda would stop the invocation (as the test set it)."""
        return self.remaining_ms
