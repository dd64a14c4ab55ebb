"""ResponseStreaming: the template as CloudFormation's transforms make it, in both modes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.test_template import (
    FUNCTION,
    STREAMING_VARIABLES,
    _load_template,
    _resource_of_type,
    _rest_api_paths,
    translate,
)

ADAPTER_LAYER = (
    "arn:${AWS::Partition}:lambda:${AWS::Region}:753240598075:layer:LambdaAdapterLayerArm64:27"
)


@pytest.fixture(scope="module")
def streaming() -> dict[str, Any]:
    return translate(ResponseStreaming="true")


@pytest.fixture(scope="module")
def buffered() -> dict[str, Any]:
    return translate()


def _integrations(translated: dict[str, Any]) -> list[dict[str, Any]]:
    """Every route's Lambda integration (not the preflights' mocks)."""
    found = [
        method["x-amazon-apigateway-integration"]
        for methods in _rest_api_paths(translated).values()
        for name, method in methods.items()
        if name != "options"
    ]
    assert len(found) == len(_load_template()["Resources"][FUNCTION]["Properties"]["Events"])
    return found


def _rest_api(translated: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = _resource_of_type(translated, "AWS::ApiGateway::RestApi")[
        "Properties"
    ]
    return properties


def _function(translated: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = translated["Resources"][FUNCTION]["Properties"]
    return properties


def test_streaming_puts_every_route_in_stream_mode_with_the_answer_limit(
    streaming: dict[str, Any],
) -> None:
    for integration in _integrations(streaming):
        assert integration["responseTransferMode"] == "STREAM"
        assert integration["timeoutInMillis"] == 300_000
        uri = integration["uri"]["Fn::Sub"]
        assert "/2021-11-15/functions/" in uri
        assert uri.endswith("/response-streaming-invocations")


def test_streaming_runs_run_sh_behind_the_web_adapter_layer(streaming: dict[str, Any]) -> None:
    function = _function(streaming)
    variables = function["Environment"]["Variables"]

    assert function["Handler"] == "run.sh"
    assert function["Timeout"] == "300"
    assert function["Layers"] == [ADAPTER_LAYER]
    assert {name: variables[name] for name in STREAMING_VARIABLES} == {
        "AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap",
        "AWS_LWA_INVOKE_MODE": "response_stream",
        "AWS_LWA_READINESS_CHECK_PATH": "/health",
        "PORT": "8080",
        "LAMBDA_WEB_ADAPTER": "true",
        "GATEWAY_TIMEOUT_SECONDS": "300",
    }


def test_streaming_api_is_regional_so_a_silent_stream_lasts_5_minutes_not_30_s(
    streaming: dict[str, Any],
) -> None:
    api = _rest_api(streaming)

    assert api["EndpointConfiguration"] == {"Types": ["REGIONAL"]}
    assert api["Parameters"] == {"endpointConfigurationTypes": "REGIONAL"}


def test_answer_limit_and_layer_version_are_parameters() -> None:
    translated = translate(
        ResponseStreaming="true", AnswerLimitSeconds="900", LambdaWebAdapterLayerVersion="30"
    )

    assert {i["timeoutInMillis"] for i in _integrations(translated)} == {900_000}
    assert _function(translated)["Timeout"] == "900"
    assert _function(translated)["Layers"][0].endswith(":LambdaAdapterLayerArm64:30")


def test_every_allowed_answer_limit_has_its_milliseconds() -> None:
    template = _load_template()
    allowed = template["Parameters"]["AnswerLimitSeconds"]["AllowedValues"]
    limits = template["Mappings"]["AnswerLimits"]

    assert {seconds: limits[seconds]["Millis"] for seconds in allowed} == {
        seconds: int(seconds) * 1000 for seconds in allowed
    }
    assert max(map(int, allowed)) == 900  # API Gateway's longest stream


def test_buffered_mode_is_mangum_with_the_29_second_limit(buffered: dict[str, Any]) -> None:
    function = _function(buffered)

    for integration in _integrations(buffered):
        assert "responseTransferMode" not in integration
        assert "timeoutInMillis" not in integration
        uri = integration["uri"]["Fn::Sub"]
        assert "/2015-03-31/functions/" in uri
        assert uri.endswith("/invocations")
    assert function["Handler"] == "chat_api.handler.handler"
    assert function["Timeout"] == 28
    assert "Layers" not in function
    assert not set(STREAMING_VARIABLES) & set(function["Environment"]["Variables"])
    # API Gateway's default endpoint type, edge-optimized, as before streaming mode existed.
    assert not {"EndpointConfiguration", "Parameters"} & set(_rest_api(buffered))


def test_snapstart_with_streaming_is_refused_with_a_reason() -> None:
    rule = _load_template()["Rules"]["SnapStartNeedsBufferedMode"]

    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "ResponseStreaming"}, "true"]}
    (assertion,) = rule["Assertions"]
    assert assertion["Assert"] == {"Fn::Equals": [{"Ref": "EnableSnapStart"}, "false"]}
    assert "EnableSnapStart=true cannot be combined" in assertion["AssertDescription"]


def test_streaming_is_off_by_default() -> None:
    parameter = _load_template()["Parameters"]["ResponseStreaming"]

    assert parameter["Default"] == "false"
    assert parameter["AllowedValues"] == ["true", "false"]
