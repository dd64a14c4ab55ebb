"""Print template.yaml as CloudFormation's transforms make it, as JSON, offline.

Runs in the SAM CLI's venv (`.venv-sam/bin/python tests/sam_translate.py [Name=value ...]`),
which tests/test_template.py calls: aws-sam-translator pins a pydantic the app cannot use, so it
cannot share the test venv. The template names no managed policy, so no IAM lookup is needed.
The template's first transform, AWS::LanguageExtensions, is applied by SAM CLI's own copy of it
with the given parameter values (the defaults for the rest), as CloudFormation does on deploy.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from samcli.lib.cfn_language_extensions import process_template
from samcli.yamlhelper import yaml_parse
from samtranslator.translator.transform import transform

TEMPLATE = Path(__file__).resolve().parents[1] / "template.yaml"
# What `sam package` puts in place of a local CodeUri; the translator accepts only S3 URIs.
PACKAGED_CODE_URI = "s3://artifacts/chat-function.zip"


class NoManagedPolicies:
    """The managed-policy lookup SAM makes for policy names; the template uses none."""

    def load(self) -> dict[str, str]:
        return {}


def translate(path: Path, parameters: dict[str, str] | None = None) -> dict[str, Any]:
    """The CloudFormation template the transforms make of the template at `path`."""
    template = process_template(yaml_parse(path.read_text()), parameter_values=parameters)
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = PACKAGED_CODE_URI
    translated: dict[str, Any] = transform(template, {}, NoManagedPolicies())
    return translated


if __name__ == "__main__":
    logging.disable(logging.WARNING)  # the translator's notes on feature toggles
    overrides = dict(argument.split("=", 1) for argument in sys.argv[1:])
    json.dump(translate(TEMPLATE, overrides), sys.stdout)
