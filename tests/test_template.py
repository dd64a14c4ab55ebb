"""The SAM template, samconfig.toml and sample events: the deployment's promises, read as data."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import yaml
from botocore import xform_name
from fastapi.testclient import TestClient

from chat_api.config import MAX_OPENAI_TIMEOUT_SECONDS, Settings
from chat_api.main import create_app
from chat_api.store.dynamodb import PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE
from tests.conftest import Configure

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"
APP_PACKAGE = ROOT / "functions" / "chat_api"
# aws-sam-translator lives in the SAM CLI's venv (`make lint-template` makes it).
SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"
API = "ChatApi"
FUNCTION = "ChatFunction"
SECRET_PARAMETER = "OpenAIKeySecretArn"
TABLE = "SessionsTable"
PUBLIC_ROUTES = [
    ("GET", "/"),
    ("GET", "/static/{path+}"),
    ("GET", "/health"),
    ("GET", "/docs"),
    ("GET", "/redoc"),
    ("GET", "/openapi.json"),
]
API_GATEWAY_TIMEOUT_SECONDS = 29
STREAMING_VARIABLES = (
    "AWS_LAMBDA_EXEC_WRAPPER",
    "AWS_LWA_INVOKE_MODE",
    "AWS_LWA_READINESS_CHECK_PATH",
    "PORT",
    "LAMBDA_WEB_ADAPTER",
    "GATEWAY_TIMEOUT_SECONDS",
)
# A transaction's items are authorized as the single-item calls they stand for.
TRANSACTION_ITEM_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}
# Request headers a browser sends without asking (the Fetch standard's CORS-safelisted ones,
# which Starlette lists too); Content-Type with a JSON body is not one of them.
CORS_SAFELISTED_HEADERS = {"accept", "accept-language", "content-language"}
CORS_ORIGIN = "https://app.example.com"


class CloudFormationLoader(yaml.SafeLoader):
    """A safe YAML loader that reads `!Ref X` as `{"Ref": "X"}` and `!Sub s` as `{"Fn::Sub": s}`."""


def _construct_intrinsic(
    loader: CloudFormationLoader, suffix: str, node: yaml.Node
) -> dict[str, Any]:
    key = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    return {key: value}


CloudFormationLoader.add_multi_constructor("!", _construct_intrinsic)


def _load_template() -> dict[str, Any]:
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=CloudFormationLoader)  # noqa: S506
    assert isinstance(template, dict)
    return template


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return _load_template()


def translate(**parameters: str) -> dict[str, Any]:
    """The CloudFormation the transforms make of template.yaml with these parameter values."""
    if not SAM_PYTHON.is_file():
        pytest.fail(f"No {SAM_PYTHON}: run `make lint-template` (make test does) first.")
    overrides = [f"{name}={value}" for name, value in parameters.items()]
    result = subprocess.run(
        [str(SAM_PYTHON), str(ROOT / "tests" / "sam_translate.py"), *overrides],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1"},
    )
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


@pytest.fixture(scope="module")
def translated() -> dict[str, Any]:
    """What a deploy with the default parameters creates."""
    return translate()


@pytest.fixture(scope="module")
def translated_cors() -> dict[str, Any]:
    """What a deploy with one CORS origin creates."""
    return translate(CorsAllowOrigins=CORS_ORIGIN)


def _resource_of_type(translated: dict[str, Any], kind: str) -> dict[str, Any]:
    (resource,) = [r for r in translated["Resources"].values() if r["Type"] == kind]
    found: dict[str, Any] = resource
    return found


def _rest_api_paths(translated: dict[str, Any]) -> dict[str, Any]:
    paths: dict[str, Any] = _resource_of_type(translated, "AWS::ApiGateway::RestApi")["Properties"][
        "Body"
    ]["paths"]
    return paths


@pytest.fixture(scope="module")
def function(template: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = template["Resources"][FUNCTION]["Properties"]
    return properties


def _api_key_required(template: dict[str, Any], method: str, path: str) -> bool:
    """Whether API Gateway demands a key for this route: the event's setting, else the API's."""
    api_default = template["Resources"][API]["Properties"]["Auth"]["ApiKeyRequired"]
    events = template["Resources"][FUNCTION]["Properties"]["Events"].values()
    for event in events:
        properties = event["Properties"]
        if (properties["Method"].upper(), properties["Path"]) == (method, path):
            return bool(properties.get("Auth", {}).get("ApiKeyRequired", api_default))
    raise AssertionError(f"no event for {method} {path}")


def _walk(node: Any, key: str | None = None) -> list[tuple[str | None, Any]]:
    """Every (key, value) pair below node; list items are paired with their list's key."""
    pairs: list[tuple[str | None, Any]] = []
    if isinstance(node, dict):
        for child_key, child in node.items():
            pairs.append((child_key, child))
            pairs.extend(_walk(child, child_key))
    elif isinstance(node, list):
        for item in node:
            pairs.append((key, item))
            pairs.extend(_walk(item, key))
    return pairs


def test_functions_run_python313_on_arm64(template: dict[str, Any]) -> None:
    shared = template["Globals"]["Function"]
    assert shared["Runtime"] == "python3.13"
    assert shared["Architectures"] == ["arm64"]


def test_function_times_out_before_api_gateway_and_sets_memory(template: dict[str, Any]) -> None:
    shared = template["Globals"]["Function"]
    assert isinstance(shared["Timeout"], int)
    assert shared["Timeout"] < API_GATEWAY_TIMEOUT_SECONDS
    assert shared["MemorySize"] >= 256


def test_handler_points_at_the_package_in_code_uri(
    function: dict[str, Any], translated: dict[str, Any]
) -> None:
    assert translated["Resources"][FUNCTION]["Properties"]["Handler"] == "chat_api.handler.handler"
    module = ROOT / function["CodeUri"] / "chat_api" / "handler.py"
    assert module.is_file()


def test_environment_is_read_from_parameters(
    template: dict[str, Any], function: dict[str, Any]
) -> None:
    variables = dict(function["Environment"]["Variables"])
    assert variables.pop("SESSIONS_TABLE") == {"Ref": TABLE}
    # Set in streaming mode only (tests/test_template_streaming.py).
    for name in STREAMING_VARIABLES:
        assert variables.pop(name)["Fn::If"][0] == "StreamingOn"
    assert variables == {
        "OPENAI_API_KEY_SECRET_ID": {"Ref": SECRET_PARAMETER},
        "OPENAI_MODEL": {"Ref": "OpenAIModel"},
        "ALLOWED_MODELS": {"Ref": "AllowedModels"},
        "MAX_COMPLETION_TOKENS": {"Ref": "MaxCompletionTokens"},
        "MAX_CHOICES": {"Ref": "MaxChoices"},
        "OPENAI_TIMEOUT_SECONDS": {"Ref": "OpenAITimeoutSeconds"},
        "ALLOWED_SERVICE_TIERS": {"Ref": "AllowedServiceTiers"},
        "ALLOW_AUDIO_OUTPUT": {"Ref": "AllowAudioOutput"},
        "ALLOW_WEB_SEARCH": {"Ref": "AllowWebSearch"},
        "ALLOW_PREDICTION": {"Ref": "AllowPrediction"},
        "ALLOWED_EMBEDDING_MODELS": {"Ref": "AllowedEmbeddingModels"},
        "ALLOWED_HOSTED_TOOLS": {"Ref": "AllowedHostedTools"},
        "ALLOW_BACKGROUND": {"Ref": "AllowBackground"},
        "TOKEN_BUDGET": {"Ref": "TokenBudget"},
        "TOKEN_BUDGET_PERIOD": {"Ref": "TokenBudgetPeriod"},
        "SYSTEM_PROMPT": {"Ref": "SystemPrompt"},
        "CORS_ALLOW_ORIGINS": {"Ref": "CorsAllowOrigins"},
        "SESSION_TTL_SECONDS": {"Ref": "SessionTtlSeconds"},
    }
    for variable in variables.values():
        assert variable["Ref"] in template["Parameters"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/chat"),
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/models"),
        ("GET", "/v1/models/{model}"),
        ("POST", "/v1/embeddings"),
        ("POST", "/v1/responses"),
        ("GET", "/v1/responses/{response_id}"),
        ("DELETE", "/v1/responses/{response_id}"),
        ("POST", "/v1/responses/{response_id}/cancel"),
        ("GET", "/v1/responses/{response_id}/input_items"),
        ("GET", "/sessions/{session_id}"),
        ("DELETE", "/sessions/{session_id}"),
    ],
)
def test_routes_that_can_spend_list_or_read_conversations_require_an_api_key(
    template: dict[str, Any], method: str, path: str
) -> None:
    # The key's id is also what the app scopes sessions by.
    assert _api_key_required(template, method, path)


@pytest.mark.parametrize(
    "path", ["/chat", "/v1/chat/completions", "/v1/models", "/sessions/{session_id}"]
)
def test_keyed_routes_answer_cors_preflight_without_a_key(
    translated_cors: dict[str, Any], path: str
) -> None:
    options = _rest_api_paths(translated_cors)[path]["options"]
    assert not any("api_key" in scheme for scheme in options.get("security", []))


def test_api_gateway_answers_every_preflight_without_the_function(
    translated_cors: dict[str, Any], function: dict[str, Any]
) -> None:
    # A MOCK integration answers from API Gateway: no invocation, no reserved concurrency.
    paths = _rest_api_paths(translated_cors)
    assert len(paths) >= 8
    for path, methods in paths.items():
        assert methods["options"]["x-amazon-apigateway-integration"]["type"] == "mock", path
    assert [e for e in function["Events"].values() if e["Properties"]["Method"] == "OPTIONS"] == []


def test_preflights_allow_the_configured_origin_and_none_without_one(
    template: dict[str, Any], translated: dict[str, Any], translated_cors: dict[str, Any]
) -> None:
    assert template["Conditions"]["CorsOn"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "CorsAllowOrigins"}, ""]}]
    }
    for path, methods in _rest_api_paths(translated_cors).items():
        integration = methods["options"]["x-amazon-apigateway-integration"]
        parameters = integration["responses"]["default"]["responseParameters"]
        origin = parameters["method.response.header.Access-Control-Allow-Origin"]
        assert origin == f"'{CORS_ORIGIN}'", path
    # Without an origin no OPTIONS method exists: API Gateway's 404 names no origin either.
    for path, methods in _rest_api_paths(translated).items():
        assert "options" not in methods, path


def test_preflight_answer_matches_the_apps_cors_headers(
    template: dict[str, Any], configure: Configure
) -> None:
    configure(CORS_ALLOW_ORIGINS="https://app.example.com")
    with TestClient(create_app()) as client:
        app = client.options(
            "/chat",
            headers={
                "origin": "https://app.example.com",
                "access-control-request-method": "POST",
            },
        ).headers
    condition, cors, without = template["Resources"][API]["Properties"]["Cors"]["Fn::If"]
    assert (condition, without) == ("CorsOn", {"Ref": "AWS::NoValue"})

    allowed = {header.lower() for header in cors["AllowHeaders"].strip("'").split(",")}
    assert allowed | CORS_SAFELISTED_HEADERS == {
        header.strip().lower() for header in app["access-control-allow-headers"].split(",")
    }
    assert cors["MaxAge"] == f"'{app['access-control-max-age']}'"


@pytest.mark.parametrize("value", ["", "*", "https://app.example.com", "http://localhost:3000"])
def test_cors_origin_parameter_accepts_one_origin(template: dict[str, Any], value: str) -> None:
    assert re.fullmatch(template["Parameters"]["CorsAllowOrigins"]["AllowedPattern"], value)


@pytest.mark.parametrize(
    "value", ["https://a.example.com,https://b.example.com", "app.example.com", "'*'"]
)
def test_cors_origin_parameter_refuses_lists_and_non_origins(
    template: dict[str, Any], value: str
) -> None:
    # The preflight's answer is one fixed header: a list would be a header browsers refuse.
    assert not re.fullmatch(template["Parameters"]["CorsAllowOrigins"]["AllowedPattern"], value)


def _unkeyed_routes(template: dict[str, Any]) -> list[tuple[str, str]]:
    events = template["Resources"][FUNCTION]["Properties"]["Events"].values()
    routes = [(e["Properties"]["Method"].upper(), e["Properties"]["Path"]) for e in events]
    return [route for route in routes if not _api_key_required(template, *route)]


def _resource_path(path: str) -> str:
    """A path as a stage's method settings write it: each "/" as "~1", after a leading "/"."""
    return "/" + path.replace("/", "~1")


def _throttle_parameters(path: str) -> tuple[str, str]:
    """The rate and burst parameters of a public route: the page's files load four at once."""
    prefix = "Page" if path.startswith("/static/") else "Public"
    return f"{prefix}ThrottleRateLimit", f"{prefix}ThrottleBurstLimit"


def test_every_route_without_a_key_has_a_stage_throttle_for_all_callers(
    template: dict[str, Any], translated: dict[str, Any]
) -> None:
    # The usage plan throttles keyed requests only; these would otherwise have no limit.
    settings = template["Resources"][API]["Properties"]["MethodSettings"]
    throttled = {(s["HttpMethod"], s["ResourcePath"]): s for s in settings}
    assert sorted(_unkeyed_routes(template)) == sorted(PUBLIC_ROUTES)
    for method, path in PUBLIC_ROUTES:
        setting = throttled[(method, _resource_path(path))]
        rate, burst = _throttle_parameters(path)
        assert setting["ThrottlingRateLimit"] == {"Ref": rate}
        assert setting["ThrottlingBurstLimit"] == {"Ref": burst}
    stage = _resource_of_type(translated, "AWS::ApiGateway::Stage")
    defaults = {name: p.get("Default") for name, p in template["Parameters"].items()}
    assert stage["Properties"]["MethodSettings"] == [
        {k: defaults[v["Ref"]] if isinstance(v, dict) else v for k, v in setting.items()}
        for setting in settings
    ]


def test_throttled_answer_does_not_blame_a_key(template: dict[str, Any]) -> None:
    # The stage throttles callers that sent no key as well.
    responses = template["Resources"][API]["Properties"]["GatewayResponses"]
    body = json.loads(responses["THROTTLED"]["ResponseTemplates"]["application/json"])
    assert responses["THROTTLED"]["StatusCode"] == 429
    assert "key" not in body["error"].lower()


def test_resource_paths_encode_slashes_as_api_gateway_reads_them() -> None:
    assert _resource_path("/health") == "/~1health"
    assert _resource_path("/v1/models") == "/~1v1~1models"


def test_anonymous_bursts_leave_reserved_concurrency_for_keyed_callers(
    template: dict[str, Any],
) -> None:
    parameters = template["Parameters"]
    for prefix in ["Public", "Page"]:
        for name in [f"{prefix}ThrottleRateLimit", f"{prefix}ThrottleBurstLimit"]:
            assert parameters[name]["Type"] == "Number"
            assert parameters[name]["MinValue"] <= parameters[name]["Default"]
    assert parameters["PageThrottleBurstLimit"]["Default"] >= 4  # a page load's four files
    bursts = sum(parameters[_throttle_parameters(path)[1]]["Default"] for _, path in PUBLIC_ROUTES)
    assert bursts < parameters["ReservedConcurrency"]["Default"]


def test_openai_timeout_parameter_allows_what_the_app_allows(template: dict[str, Any]) -> None:
    parameter = template["Parameters"]["OpenAITimeoutSeconds"]
    assert parameter["Default"] == Settings.model_fields["openai_timeout_seconds"].default
    assert parameter["MaxValue"] == MAX_OPENAI_TIMEOUT_SECONDS
    Settings(openai_timeout_seconds=MAX_OPENAI_TIMEOUT_SECONDS)


def test_max_completion_tokens_is_a_bounded_parameter(template: dict[str, Any]) -> None:
    parameter = template["Parameters"]["MaxCompletionTokens"]
    assert parameter["Type"] == "Number"
    assert parameter["MinValue"] <= parameter["Default"] <= parameter["MaxValue"]


@pytest.mark.parametrize("value", ["", "gpt-4o-mini", "gpt-4o-mini,gpt-4.1", "gpt-4o-mini, o3"])
def test_allowed_models_parameter_accepts_model_lists(template: dict[str, Any], value: str) -> None:
    assert re.fullmatch(template["Parameters"]["AllowedModels"]["AllowedPattern"], value)


@pytest.mark.parametrize("value", ["*", "gpt-4o-mini,", "https://evil.example/v1"])
def test_allowed_models_parameter_refuses_non_models(template: dict[str, Any], value: str) -> None:
    assert not re.fullmatch(template["Parameters"]["AllowedModels"]["AllowedPattern"], value)


@pytest.mark.parametrize(("method", "path"), PUBLIC_ROUTES)
def test_public_routes_need_no_api_key(template: dict[str, Any], method: str, path: str) -> None:
    assert not _api_key_required(template, method, path)


def test_every_route_belongs_to_the_keyed_api(function: dict[str, Any]) -> None:
    # An Api event without RestApiId lands on SAM's implicit API, which has no key or usage plan.
    for event in function["Events"].values():
        assert event["Type"] == "Api"
        assert event["Properties"]["RestApiId"] == {"Ref": API}


def test_usage_plan_throttles_and_caps_requests_per_key(template: dict[str, Any]) -> None:
    plan = template["Resources"][API]["Properties"]["Auth"]["UsagePlan"]
    assert plan["CreateUsagePlan"] == "PER_API"
    assert set(plan["Throttle"]) == {"RateLimit", "BurstLimit"}
    assert set(plan["Quota"]) == {"Limit", "Period"}
    for setting in [*plan["Throttle"].values(), *plan["Quota"].values()]:
        assert setting["Ref"] in template["Parameters"]


def test_api_serves_the_prod_stage(template: dict[str, Any]) -> None:
    assert template["Resources"][API]["Properties"]["StageName"] == "Prod"


@pytest.mark.parametrize("response_type", ["DEFAULT_4XX", "DEFAULT_5XX", "INVALID_API_KEY"])
def test_gateway_errors_answer_in_the_apps_json_shape(
    template: dict[str, Any], response_type: str
) -> None:
    responses = template["Resources"][API]["Properties"]["GatewayResponses"]
    body = responses[response_type]["ResponseTemplates"]["application/json"]
    # API Gateway substitutes the message as an already-quoted JSON string.
    rendered = body.replace("$context.error.messageString", '"Forbidden"')
    assert set(json.loads(rendered)) == {"error"}


def _dynamodb_actions_the_app_calls() -> set[str]:
    """The IAM actions of every DynamoDB call in the app's source.

    A call is a method named after a DynamoDB operation (`put_item`, `query`...); a
    transaction needs the actions of the item kinds the module writes into one.
    """
    model = botocore.session.get_session().get_service_model("dynamodb")
    operations = {xform_name(name): name for name in model.operation_names}
    actions: set[str] = set()
    for module in APP_PACKAGE.rglob("*.py"):
        tree = ast.parse(module.read_text())
        nodes = list(ast.walk(tree))
        called = {
            operations[node.func.attr]
            for node in nodes
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in operations
        }
        if "TransactWriteItems" in called:
            called.remove("TransactWriteItems")
            keys = {
                key.value
                for node in nodes
                if isinstance(node, ast.Dict)
                for key in node.keys
                if isinstance(key, ast.Constant) and isinstance(key.value, str)
            }
            called |= {
                TRANSACTION_ITEM_ACTIONS[kind] for kind in keys & TRANSACTION_ITEM_ACTIONS.keys()
            }
        actions |= called
    return {f"dynamodb:{action}" for action in actions}


def _dynamodb_statements(policies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        statement
        for policy in policies
        for statement in policy.get("Statement", [])
        if any(str(action).startswith("dynamodb:") for action in statement["Action"])
    ]


def test_only_permissions_are_the_openai_secret_and_the_sessions_table(
    function: dict[str, Any],
) -> None:
    secret, table = function["Policies"]
    assert secret == {
        "AWSSecretsManagerGetSecretValuePolicy": {"SecretArn": {"Ref": SECRET_PARAMETER}}
    }
    (statement,) = table["Statement"]
    assert set(statement) == {"Effect", "Action", "Resource"}
    assert statement["Effect"] == "Allow"
    assert statement["Resource"] == {"Fn::GetAtt": [TABLE, "Arn"]}


def test_dynamodb_permissions_are_exactly_the_calls_the_app_makes(
    function: dict[str, Any],
) -> None:
    # Derived from the code, so a new call fails here until the policy allows it, and an
    # action no code uses (Scan) cannot stay.
    needed = _dynamodb_actions_the_app_calls()
    (statement,) = _dynamodb_statements(function["Policies"])
    assert sorted(statement["Action"]) == sorted(needed)
    assert "dynamodb:Query" in needed
    assert "dynamodb:Scan" not in needed


def test_deployed_role_allows_no_other_dynamodb_action(translated: dict[str, Any]) -> None:
    role = translated["Resources"][f"{FUNCTION}Role"]["Properties"]
    statements = _dynamodb_statements([p["PolicyDocument"] for p in role["Policies"]])
    assert {action for s in statements for action in s["Action"]} == (
        _dynamodb_actions_the_app_calls()
    )
    assert [s["Resource"] for s in statements] == [{"Fn::GetAtt": [TABLE, "Arn"]}]


def test_only_iam_resource_is_api_gateways_logging_role(template: dict[str, Any]) -> None:
    iam = {
        name: resource
        for name, resource in template["Resources"].items()
        if resource["Type"].startswith("AWS::IAM::")
    }
    assert set(iam) == {"ApiGatewayCloudWatchRole"}
    role = iam["ApiGatewayCloudWatchRole"]
    assert role["DeletionPolicy"] == "Retain"
    properties = role["Properties"]
    assert set(properties) == {"Description", "AssumeRolePolicyDocument", "ManagedPolicyArns"}
    (statement,) = properties["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "apigateway.amazonaws.com"}
    (policy,) = properties["ManagedPolicyArns"]
    assert policy["Fn::Sub"].endswith(":policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs")
    account = template["Resources"]["ApiGatewayAccount"]["Properties"]
    assert account["CloudWatchRoleArn"] == {"Fn::GetAtt": ["ApiGatewayCloudWatchRole", "Arn"]}
    assert template["Resources"][API]["DependsOn"] == "ApiGatewayAccount"


def test_sessions_table_has_the_keys_and_ttl_the_store_uses(template: dict[str, Any]) -> None:
    table = template["Resources"][TABLE]
    assert table["Type"] == "AWS::DynamoDB::Table"
    properties = table["Properties"]
    assert properties["KeySchema"] == [
        {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
        {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
    ]
    assert properties["AttributeDefinitions"] == [
        {"AttributeName": PARTITION_KEY, "AttributeType": "S"},
        {"AttributeName": SORT_KEY, "AttributeType": "S"},
    ]
    assert properties["TimeToLiveSpecification"] == {
        "AttributeName": TTL_ATTRIBUTE,
        "Enabled": True,
    }


def test_sessions_table_is_on_demand_encrypted_and_recoverable(template: dict[str, Any]) -> None:
    properties = template["Resources"][TABLE]["Properties"]
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["SSESpecification"] == {"SSEEnabled": True}
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_template_writes_no_wildcard_permission(template: dict[str, Any]) -> None:
    for key, value in _walk(template):
        if key in {"Action", "NotAction", "Resource", "NotResource"}:
            assert "*" not in json.dumps(value), f"{key}: {value}"


def test_secret_parameter_accepts_only_a_full_secret_arn(template: dict[str, Any]) -> None:
    pattern = template["Parameters"][SECRET_PARAMETER]["AllowedPattern"]
    full = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:chat-api/openai-Ab12Cd"
    assert re.fullmatch(pattern, full)
    assert not re.fullmatch(pattern, "*")
    assert not re.fullmatch(pattern, full.removesuffix("-Ab12Cd"))


def test_logs_go_to_a_log_group_with_retention(
    template: dict[str, Any], function: dict[str, Any]
) -> None:
    group_id = function["LoggingConfig"]["LogGroup"]["Ref"]
    group = template["Resources"][group_id]
    assert group["Type"] == "AWS::Logs::LogGroup"
    retention = group["Properties"]["RetentionInDays"]
    if isinstance(retention, dict):
        retention = template["Parameters"][retention["Ref"]]["Default"]
    assert 0 < retention <= 365


def test_reserved_concurrency_is_a_bounded_parameter(
    template: dict[str, Any], function: dict[str, Any]
) -> None:
    assert function["ReservedConcurrentExecutions"] == {"Ref": "ReservedConcurrency"}
    parameter = template["Parameters"]["ReservedConcurrency"]
    assert parameter["Type"] == "Number"
    assert parameter["MinValue"] >= 1
    assert parameter["MinValue"] <= parameter["Default"] <= parameter["MaxValue"]


def test_choice_parameters_are_constrained(template: dict[str, Any]) -> None:
    constraints = {"AllowedValues", "AllowedPattern", "MinValue", "MinLength"}
    unconstrained = [
        name
        for name, parameter in template["Parameters"].items()
        if not constraints & set(parameter)
    ]
    assert unconstrained == []


def test_outputs_name_the_api_url_key_and_function(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert outputs["ApiUrl"]["Value"] == {
        "Fn::Sub": "https://${ChatApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/Prod/"
    }
    # SAM names the key it creates for a PER_API usage plan `<api logical id>ApiKey`.
    assert outputs["ApiKeyId"]["Value"] == {"Ref": f"{API}ApiKey"}
    assert outputs["ChatFunctionArn"]["Value"] == {"Fn::GetAtt": [FUNCTION, "Arn"]}
    assert outputs["SessionsTableName"]["Value"] == {"Ref": TABLE}


def test_samconfig_deploys_without_account_specific_names() -> None:
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    deploy = config["default"]["deploy"]["parameters"]
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert deploy["resolve_s3"] is True
    assert deploy["confirm_changeset"] is True
    assert "s3_bucket" not in deploy
    assert not re.search(r"\b[0-9]{12}\b", (ROOT / "samconfig.toml").read_text())


@pytest.mark.parametrize("environment", ["default", "staging", "production"])
def test_samconfig_leaves_the_build_to_the_makefile(environment: str) -> None:
    build = tomllib.loads((ROOT / "samconfig.toml").read_text())[environment]["build"]
    # A manifest would replace the Makefile SAM runs; a cached build would miss a change to
    # requirements.lock (SAM hashes only CodeUri and the Makefile).
    assert "manifest" not in build["parameters"]
    assert not build["parameters"].get("cached", False)


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_samconfig_names_a_stack_per_environment(environment: str) -> None:
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())[environment]
    assert config["global"]["parameters"]["stack_name"] == f"chat-api-{environment}"
    assert config["deploy"]["parameters"]["resolve_s3"] is True


def test_sample_events_cover_every_event_source() -> None:
    assert {path.name for path in EVENTS.glob("*.json")} >= {
        "chat.json",
        "health.json",
        "docs.json",
        "chat-http-api.json",
        "chat-alb.json",
        "chat-function-url.json",
    }


@pytest.mark.parametrize("path", sorted(EVENTS.glob("*.json")), ids=lambda path: path.name)
def test_sample_event_is_a_json_object(path: Path) -> None:
    assert isinstance(json.loads(path.read_text()), dict)


@pytest.mark.parametrize(
    "name",
    [
        "chat.json",
        "chat-stream.json",
        "chat-completions.json",
        "chat-completions-stream.json",
        "models.json",
        "health.json",
        "docs.json",
    ],
)
def test_rest_events_carry_the_prod_stage_path(name: str) -> None:
    event = json.loads((EVENTS / name).read_text())
    context = event["requestContext"]
    assert context["stage"] == "Prod"
    assert context["path"] == f"/Prod{event['path']}"
    assert context["resourcePath"] == event["resource"] == event["path"]


@pytest.mark.parametrize(
    "name", ["chat.json", "chat-http-api.json", "chat-alb.json", "chat-function-url.json"]
)
def test_chat_events_post_a_message(name: str) -> None:
    event = json.loads((EVENTS / name).read_text())
    method = event.get("httpMethod") or event["requestContext"]["http"]["method"]
    assert method == "POST"
    assert not event["isBase64Encoded"]
    assert json.loads(event["body"])["message"]


def test_api_writes_json_access_logs_with_the_request_id(template: dict[str, Any]) -> None:
    api = template["Resources"][API]["Properties"]
    setting = api["AccessLogSetting"]
    group_id = setting["DestinationArn"]["Fn::GetAtt"][0]
    assert template["Resources"][group_id]["Type"] == "AWS::Logs::LogGroup"
    assert "RetentionInDays" in template["Resources"][group_id]["Properties"]
    fields = json.loads(setting["Format"])
    assert fields["requestId"] == "$context.requestId"
    assert {"status", "integrationLatency", "errorType", "apiKeyId"} <= set(fields)


def test_api_and_function_are_traced(template: dict[str, Any]) -> None:
    assert template["Resources"][API]["Properties"]["TracingEnabled"] is True
    assert template["Globals"]["Function"]["Tracing"] == "Active"


def _alarms(template: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (resource["Properties"]["Namespace"], resource["Properties"]["MetricName"]): resource[
            "Properties"
        ]
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
    }


def test_alarm_on_api_5xx_watches_this_api(template: dict[str, Any]) -> None:
    alarm = _alarms(template)[("AWS/ApiGateway", "5XXError")]
    dimensions = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
    assert dimensions["ApiName"] == template["Resources"][API]["Properties"]["Name"]
    assert dimensions["Stage"] == template["Resources"][API]["Properties"]["StageName"]


def test_alarm_on_throttles_watches_the_capped_function(template: dict[str, Any]) -> None:
    alarm = _alarms(template)[("AWS/Lambda", "Throttles")]
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": FUNCTION}}]
    assert alarm["Threshold"] >= 1


def test_alarms_notify_the_optional_topic(template: dict[str, Any]) -> None:
    for alarm in _alarms(template).values():
        assert alarm["AlarmActions"] == {
            "Fn::If": ["HasAlarmAction", [{"Ref": "AlarmActionArn"}], {"Ref": "AWS::NoValue"}]
        }


def test_powertools_names_match_the_app_defaults(template: dict[str, Any]) -> None:
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    defaults = Settings.model_fields
    assert variables["POWERTOOLS_SERVICE_NAME"] == defaults["powertools_service_name"].default
    assert (
        variables["POWERTOOLS_METRICS_NAMESPACE"]
        == defaults["powertools_metrics_namespace"].default
    )


@pytest.mark.parametrize("name", ["chat-http-api.json", "chat-alb.json", "chat-function-url.json"])
def test_events_the_app_checks_itself_carry_a_client_key(name: str) -> None:
    # Behind these sources no gateway checks the key: the app needs one (CLIENT_API_KEYS).
    event = json.loads((EVENTS / name).read_text())
    assert event["headers"]["x-api-key"]


def test_snapstart_is_a_parameter_off_by_default(template: dict[str, Any]) -> None:
    parameter = template["Parameters"]["EnableSnapStart"]
    assert parameter["AllowedValues"] == ["true", "false"]
    assert parameter["Default"] == "false"
    assert template["Conditions"]["SnapStartOn"] == {
        "Fn::Equals": [{"Ref": "EnableSnapStart"}, "true"]
    }


def test_snapstart_applies_to_the_versions_the_alias_serves(function: dict[str, Any]) -> None:
    # SnapStart snapshots published versions only; SAM points the API at the alias.
    assert function["SnapStart"] == {
        "ApplyOn": {"Fn::If": ["SnapStartOn", "PublishedVersions", "None"]}
    }
    assert function["AutoPublishAlias"] == "live"


def test_a_new_configuration_revision_publishes_a_new_version(
    template: dict[str, Any], function: dict[str, Any]
) -> None:
    # SAM publishes on code changes only; the version's description changes with the
    # revision `make deploy` computes, and a changed description replaces the version.
    assert "${ConfigRevision}" in function["VersionDescription"]["Fn::Sub"]
    assert re.fullmatch(template["Parameters"]["ConfigRevision"]["AllowedPattern"], "")
    assert re.fullmatch(template["Parameters"]["ConfigRevision"]["AllowedPattern"], "ab" * 32)
