"""The CI pipeline's promises, read from .github/workflows (actionlint checks the syntax)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

WORKFLOWS = Path(__file__).resolve().parents[1] / ".github" / "workflows"
WORKFLOW_FILES = sorted(WORKFLOWS.glob("*.yml"))
# `uses: owner/repo[/path]@ref # comment`, as a block-style line (comments are lost to YAML).
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<action>\S+?)(?:\s+#\s*(?P<comment>.*))?$")
COMMIT_SHA = re.compile(r"[0-9a-f]{40}")
RELEASE = re.compile(r"v\d+(\.\d+)*")


def _workflow(name: str) -> dict[Any, Any]:
    workflow: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    return workflow


def _uses(node: Any) -> list[str]:
    """Every `uses:` value in a parsed workflow."""
    if isinstance(node, dict):
        found = [node["uses"]] if isinstance(node.get("uses"), str) else []
        return found + [use for child in node.values() for use in _uses(child)]
    if isinstance(node, list):
        return [use for child in node for use in _uses(child)]
    return []


def _triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    # YAML 1.1 reads the bare key `on` as the boolean True.
    triggers: dict[str, Any] = workflow[True]
    return triggers


@pytest.fixture(scope="module")
def pipeline() -> dict[str, Any]:
    return _workflow("pipeline.yml")


@pytest.fixture(scope="module")
def deploy() -> dict[str, Any]:
    return _workflow("deploy.yml")


def test_pull_requests_and_main_run_the_pipeline(pipeline: dict[str, Any]) -> None:
    triggers = _triggers(pipeline)
    assert "pull_request" in triggers
    assert triggers["push"] == {"branches": ["main"]}


def test_every_run_starts_with_make_test(pipeline: dict[str, Any]) -> None:
    test = pipeline["jobs"]["test"]
    assert "if" not in test
    assert [step["run"] for step in test["steps"] if "run" in step] == ["make test"]


def test_staging_deploys_only_from_main_after_the_tests(pipeline: dict[str, Any]) -> None:
    staging = pipeline["jobs"]["staging"]
    assert staging["needs"] == "test"
    assert staging["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    assert staging["with"] == {"environment": "staging"}


def test_production_follows_staging_in_its_approved_environment(
    pipeline: dict[str, Any], deploy: dict[str, Any]
) -> None:
    production = pipeline["jobs"]["production"]
    assert production["needs"] == "staging"
    assert production["with"] == {"environment": "production"}
    # The GitHub environment named by the input carries the required reviewers.
    assert deploy["jobs"]["deploy"]["environment"] == "${{ inputs.environment }}"


def test_deploy_assumes_a_role_through_oidc_without_stored_keys(deploy: dict[str, Any]) -> None:
    job = deploy["jobs"]["deploy"]
    credentials = next(
        step for step in job["steps"] if "configure-aws-credentials" in step.get("uses", "")
    )
    assert set(credentials["with"]) == {"role-to-assume", "aws-region"}
    assert deploy["permissions"]["id-token"] == "write"
    assert "aws-access-key-id" not in (WORKFLOWS / "deploy.yml").read_text()


def test_deploy_builds_deploys_then_smoke_tests_the_stacks_outputs(deploy: dict[str, Any]) -> None:
    runs = [step["run"] for step in deploy["jobs"]["deploy"]["steps"] if "run" in step]
    assert runs[0].startswith("make deploy CONFIG_ENV=")
    assert "ApiUrl" in runs[1]
    assert "get-api-key" in runs[1]
    assert "::add-mask::" in runs[1]
    assert runs[1].rstrip().endswith('make smoke URL="$url" KEY="$key"')


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda path: path.name)
def test_third_party_actions_are_pinned_to_a_commit_with_its_release(path: Path) -> None:
    # A tag can be moved to other code; a commit cannot. The comment says which release it is.
    lines = [m for line in path.read_text().splitlines() if (m := USES_LINE.match(line))]
    # Every `uses:` YAML sees is one of the lines read here, so none escapes the check.
    assert sorted(m["action"] for m in lines) == sorted(_uses(yaml.safe_load(path.read_text())))
    for line in lines:
        action = line["action"]
        if action.startswith("./"):
            continue  # this repository's own reusable workflow
        _, _, ref = action.partition("@")
        assert COMMIT_SHA.fullmatch(ref), f"{action} is not pinned to a commit SHA"
        comment = line["comment"] or ""
        assert RELEASE.fullmatch(comment), f"{action} has no release comment such as # v4.2.2"


def test_workflows_use_third_party_actions() -> None:
    # The pinning test above checks something: the workflows do use third-party actions.
    actions = [use for path in WORKFLOW_FILES for use in _uses(yaml.safe_load(path.read_text()))]
    assert any(not action.startswith("./") for action in actions)
