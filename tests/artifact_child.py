"""Serve events from a built artifact in a fresh interpreter; report what was imported.

`tests/test_import_audit.py` runs it as `python3.13 -I -S -B artifact_child.py ARTIFACT
REPORT`, so that only the artifact is on sys.path, as in /var/task. The events come as a JSON
list on stdin; `{session_id}` in an event's path or body stands for the `session_id` of the
latest response that had one. It writes REPORT, JSON: each response's status and body, each
loaded module's file, and each import no finder could satisfy, with the module that asked.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType

    from mangum.types import LambdaCognitoIdentity, LambdaMobileClientContext

# The import machinery's own frames, between a finder and the module that imports.
IMPORT_MACHINERY = {"importlib", "importlib._bootstrap", "importlib._bootstrap_external"}


class LookedFor:
    """The last finder on sys.meta_path: records the imports that every other one missed."""

    def __init__(self) -> None:
        self.imports: list[tuple[str, str]] = []

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        """Record `name` and the module whose import asked for it; find nothing."""
        frame = sys._getframe(1)
        while frame.f_back and frame.f_globals.get("__name__") in IMPORT_MACHINERY:
            frame = frame.f_back
        self.imports.append((name, frame.f_globals.get("__name__", "?")))
        return None


class Context:
    """Lambda's context object (scripts/invoke.py's LocalContext would import python-dotenv)."""

    function_name = "ChatFunction"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ChatFunction"
    memory_limit_in_mb = 512
    aws_request_id = "import-audit"
    log_group_name = "/aws/lambda/ChatFunction"
    log_stream_name = "import-audit"
    identity: LambdaCognitoIdentity | None = None
    client_context: LambdaMobileClientContext | None = None

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left: the full budget."""
        return 29_000


def main(artifact: str, report_path: str) -> None:
    sys.path.insert(0, artifact)
    looked_for = LookedFor()
    sys.meta_path.append(looked_for)
    events: list[dict[str, Any]] = json.load(sys.stdin)

    from chat_api.handler import handler

    responses = []
    session_id = ""
    for event in events:
        for field in ("path", "body"):
            if isinstance(event.get(field), str):
                event[field] = event[field].replace("{session_id}", session_id)
        response = handler(event, Context())
        body = response.get("body") or ""
        if response["headers"].get("content-type") == "application/json" and body:
            session_id = json.loads(body).get("session_id") or session_id
        responses.append({"status": response["statusCode"], "body": body})
    loaded = {
        name: module.__file__
        for name, module in sorted(sys.modules.items())
        if getattr(module, "__file__", None)
    }
    report = {"responses": responses, "loaded": loaded, "looked_for": looked_for.imports}
    with open(report_path, "w") as file:
        json.dump(report, file)


if __name__ == "__main__":
    main(*sys.argv[1:])
