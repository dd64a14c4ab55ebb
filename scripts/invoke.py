"""Run an event file through the real Lambda handler in this process and print its response.

`sam local invoke` does the same in Docker; this needs none. Reads `.env` like `make dev`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dotenv import load_dotenv

# The tests' stand-in for Lambda's context object (standard library only).
from tests.lambda_context import LambdaContext


def main(event_path: str) -> None:
    """Invoke the handler with the event at `event_path`."""
    load_dotenv(".env")
    from chat_api.handler import handler  # after .env is loaded

    event = json.loads(Path(event_path).read_text())
    print(json.dumps(handler(event, LambdaContext()), indent=2))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "events/chat.json")
