"""Run an event file through the real Lambda handler in this process and print its response.

`sam local invoke` does the same in Docker; this needs none. Reads `.env` like `make dev`.
"""

from __future__ import annotations

import json
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dotenv import load_dotenv

if TYPE_CHECKING:
    from mangum.types import LambdaCognitoIdentity, LambdaMobileClientContext


@dataclass
class LocalContext:
    """Stands in for the context object Lambda passes to the handler."""

    function_name: str = "ChatFunction"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:ChatFunction"
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/ChatFunction"
    log_stream_name: str = "local"
    identity: LambdaCognitoIdentity | None = None
    client_context: LambdaMobileClientContext | None = None
    remaining_ms: int = 29_000

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before Lambda would stop the invocation."""
        return self.remaining_ms


def main(event_path: str) -> None:
    """Invoke the handler with the event at `event_path`."""
    load_dotenv(".env")
    from chat_api.handler import handler  # after .env is loaded

    event = json.loads(Path(event_path).read_text())
    print(json.dumps(handler(event, LocalContext()), indent=2))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "events/chat.json")
