"""The floor: a bare Lambda handler that imports only `openai` and makes the same call.

No framework, no validation, no error mapping: what any Python function that calls OpenAI
pays at minimum. The chat API's cold start and warm latency are measured against it.
"""

from __future__ import annotations

import json
import os
from typing import Any

from openai import OpenAI

# Module scope, as a bare handler would have it: created once per container.
client = OpenAI()


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    """Answer an API Gateway `POST /chat` event."""
    message = json.loads(event["body"])["message"]
    completion = client.chat.completions.create(
        model=os.environ.get("OPENAI_MODEL", "gpt-4o-mini"),
        messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": message},
        ],
    )
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"response": completion.choices[0].message.content}),
    }
