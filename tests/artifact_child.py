"""Serve events from a built artifact in a fresh interpreter; report what was imported.

`tests/test_import_audit.py` runs it as `python3.13 -I -S -B artifact_child.py ARTIFACT
REPORT`, so that only the artifact is on sys.path, as in /var/task. The events come as a JSON
list on stdin; `{session_id}` in an event's path or body stands for the `session_id` of the
latest response that had one. It writes REPORT, JSON: each response's status and body, each
loaded module's file, the modules loaded when the first response was ready, and each import
no finder could satisfy, with the module that asked.
"""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType

# The tests' stand-in for Lambda's context object (standard library only), loaded by its
# path: -I keeps this folder off sys.path, which must hold the artifact alone.
LambdaContext = runpy.run_path(str(Path(__file__).with_name("lambda_context.py")))["LambdaContext"]
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


def main(artifact: str, report_path: str) -> None:
    sys.path.insert(0, artifact)
    looked_for = LookedFor()
    sys.meta_path.append(looked_for)
    events: list[dict[str, Any]] = json.load(sys.stdin)

    from chat_api.handler import handler

    responses = []
    cold: list[str] = []
    session_id = ""
    for event in events:
        for field in ("path", "body"):
            if isinstance(event.get(field), str):
                event[field] = event[field].replace("{session_id}", session_id)
        response = handler(event, LambdaContext())
        body = response.get("body") or ""
        if response["headers"].get("content-type") == "application/json" and body:
            session_id = json.loads(body).get("session_id") or session_id
        responses.append({"status": response["statusCode"], "body": body})
        if len(responses) == 1:  # a cold start: the import and the first request
            cold = sorted(sys.modules)
    loaded = {
        name: module.__file__
        for name, module in sorted(sys.modules.items())
        if getattr(module, "__file__", None)
    }
    report = {
        "responses": responses,
        "loaded": loaded,
        "loaded_by_the_first": cold,
        "looked_for": looked_for.imports,
    }
    with open(report_path, "w") as file:
        json.dump(report, file)


if __name__ == "__main__":
    main(*sys.argv[1:])
