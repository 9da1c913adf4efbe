"""CreateFunction / UpdateFunctionConfiguration / UpdateFunctionCode body validation."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from ember.control.fields import ENV_KEY_PATTERN, LAYER_VERSION_ARN_PATTERN, ROLE_PATTERN
from ember.control.validation import (
    AWS_SUPPORTED_RUNTIMES,
    DEPRECATED_RUNTIMES,
    KNOWN_RUNTIMES,
    CreateFunctionInput,
    UpdateCodeInput,
    parse_create_function,
    parse_update_code,
    parse_update_configuration,
)
from ember.errors import (
    ClientError,
    InvalidParameterValueException,
    InvalidRequestContentException,
    ResourceNotFoundException,
    ValidationException,
)
from ember.model.functions import FunctionConfig, LoggingConfig

INSTALLED = ("python3.12", "python3.13", "provided.al2023")
ROLE = "arn:aws:iam::123456789012:role/lambda-role"
ZIP = b"PK\x05\x06" + b"\x00" * 18
LAYER = "arn:aws:lambda:us-east-1:123456789012:layer:deps"


def body(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "FunctionName": "my-fn",
        "Role": ROLE,
        "Runtime": "python3.12",
        "Handler": "app.handler",
        "Code": {"ZipFile": base64.b64encode(ZIP).decode()},
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def create(**overrides: Any) -> CreateFunctionInput:
    return parse_create_function(body(**overrides), INSTALLED)


def error_of(**overrides: Any) -> ClientError:
    with pytest.raises(ClientError) as caught:
        create(**overrides)
    return caught.value


def one_violation(value: str, field: str, constraint: str) -> str:
    return (
        f"1 validation error detected: Value {value} at '{field}' failed to satisfy "
        f"constraint: {constraint}"
    )


# ---------------------------------------------------------------- create: accepted


def test_minimal_create_gets_lambda_defaults() -> None:
    parsed = create()
    assert parsed.name == "my-fn"
    assert parsed.zip_file == ZIP
    assert parsed.publish is False
    assert dict(parsed.tags) == {}
    assert parsed.config == FunctionConfig(runtime="python3.12", handler="app.handler", role=ROLE)


def test_full_create() -> None:
    parsed = create(
        Description="d" * 256,
        Timeout=900,
        MemorySize=10240,
        EphemeralStorage={"Size": 10240},
        Environment={"Variables": {"A1": "x", "b_2": ""}},
        Architectures=["arm64"],
        TracingConfig={"Mode": "Active"},
        LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "DEBUG", "LogGroup": "/x/y"},
        Layers=[f"{LAYER}:1", "arn:aws:lambda:us-east-1:123456789012:layer:other:3"],
        DeadLetterConfig={"TargetArn": "arn:aws:sqs:us-east-1:123456789012:dlq"},
        Publish=True,
        Tags={"team": "a"},
    )
    config = parsed.config
    assert (config.timeout, config.memory_size, config.ephemeral_storage) == (900, 10240, 10240)
    assert dict(config.environment) == {"A1": "x", "b_2": ""}
    assert config.architectures == ("arm64",)
    assert config.tracing_mode == "Active"
    assert config.logging == LoggingConfig("JSON", "/x/y", "DEBUG", "INFO")
    assert config.layers == (f"{LAYER}:1", "arn:aws:lambda:us-east-1:123456789012:layer:other:3")
    assert config.dead_letter_target == "arn:aws:sqs:us-east-1:123456789012:dlq"
    assert parsed.publish is True
    assert dict(parsed.tags) == {"team": "a"}


def test_minimum_values_are_accepted() -> None:
    config = create(Timeout=1, MemorySize=128, EphemeralStorage={"Size": 512}).config
    assert (config.timeout, config.memory_size, config.ephemeral_storage) == (1, 128, 512)


def test_function_name_may_be_an_arn() -> None:
    arn = "arn:aws:lambda:us-east-1:123456789012:function:my-fn"
    parsed = parse_create_function(body(FunctionName=arn), INSTALLED, region="us-east-1")
    assert parsed.name == "my-fn"


def test_echoed_members_are_kept_as_given() -> None:
    vpc = {"SubnetIds": ["subnet-1"], "SecurityGroupIds": []}
    config = create(
        VpcConfig=vpc,
        KMSKeyArn="arn:aws:kms:us-east-1:123456789012:key/k",
        SnapStart={"ApplyOn": "None"},
        ImageConfig={"Command": ["x"]},
        FileSystemConfigs=[],
    ).config
    assert config.echoed["VpcConfig"] == vpc
    assert config.echoed["KMSKeyArn"] == "arn:aws:kms:us-east-1:123456789012:key/k"
    assert set(config.echoed) == {
        "VpcConfig",
        "KMSKeyArn",
        "SnapStart",
        "ImageConfig",
        "FileSystemConfigs",
    }


def test_unknown_members_are_ignored() -> None:
    assert create(NotAThing=1, Whatever={"x": 1}).config == create().config


def test_base64_with_line_breaks_is_accepted() -> None:
    text = base64.encodebytes(b"x" * 200).decode()
    assert "\n" in text
    assert create(Code={"ZipFile": text}).zip_file == b"x" * 200


def test_json_logging_defaults_and_text_drops_levels() -> None:
    assert create(LoggingConfig={"LogFormat": "JSON"}).config.logging == LoggingConfig(
        "JSON", None, "INFO", "INFO"
    )
    text = create(LoggingConfig={"LogFormat": "Text", "SystemLogLevel": "WARN"}).config.logging
    assert text == LoggingConfig("Text", None, None, None)


def test_environment_of_exactly_4_kb_is_accepted() -> None:
    value = "v" * (4096 - len('{"KK":""}'))
    assert create(Environment={"Variables": {"KK": value}}).config.environment["KK"] == value


def test_empty_dead_letter_target_means_none() -> None:
    assert create(DeadLetterConfig={"TargetArn": ""}).config.dead_letter_target is None


# ---------------------------------------------------------------- create: model constraints


def test_missing_function_name() -> None:
    error = error_of(FunctionName=None)
    assert isinstance(error, ValidationException)
    assert error.message == one_violation("null", "functionName", "Member must not be null")


def test_bad_function_name_is_invalid_parameter_value() -> None:
    error = error_of(FunctionName="a" * 65)
    assert isinstance(error, InvalidParameterValueException)
    assert error.message.endswith("Member must have length less than or equal to 64")


def test_qualified_function_name_is_refused() -> None:
    error = error_of(FunctionName="my-fn:prod")
    assert isinstance(error, InvalidParameterValueException)
    assert "qualifier" in error.message


def test_function_arn_in_other_region() -> None:
    arn = "arn:aws:lambda:eu-west-1:123456789012:function:my-fn"
    with pytest.raises(ResourceNotFoundException, match="not reachable in this region"):
        parse_create_function(body(FunctionName=arn), INSTALLED, region="us-east-1")


def test_missing_role() -> None:
    error = error_of(Role=None)
    assert isinstance(error, ValidationException)
    assert error.message == one_violation("null", "role", "Member must not be null")


def test_bad_role() -> None:
    error = error_of(Role="my-role")
    assert error.message == one_violation(
        "'my-role'", "role", f"Member must satisfy regular expression pattern: {ROLE_PATTERN}"
    )


def test_missing_code() -> None:
    error = error_of(Code=None)
    assert isinstance(error, ValidationException)
    assert error.message == one_violation("null", "code", "Member must not be null")


@pytest.mark.parametrize(
    ("overrides", "field", "value", "constraint"),
    [
        ({"MemorySize": 127}, "memorySize", "127", "greater than or equal to 128"),
        ({"MemorySize": 10241}, "memorySize", "10241", "less than or equal to 10240"),
        ({"Timeout": 0}, "timeout", "0", "greater than or equal to 1"),
        ({"Timeout": 901}, "timeout", "901", "less than or equal to 900"),
        (
            {"EphemeralStorage": {"Size": 511}},
            "ephemeralStorage.size",
            "511",
            "greater than or equal to 512",
        ),
        (
            {"EphemeralStorage": {"Size": 10241}},
            "ephemeralStorage.size",
            "10241",
            "less than or equal to 10240",
        ),
    ],
)
def test_ranges(overrides: dict[str, Any], field: str, value: str, constraint: str) -> None:
    error = error_of(**overrides)
    assert isinstance(error, ValidationException)
    assert error.message == one_violation(
        f"'{value}'", field, f"Member must have value {constraint}"
    )


def test_ephemeral_storage_needs_size() -> None:
    error = error_of(EphemeralStorage={})
    assert error.message == one_violation(
        "null", "ephemeralStorage.size", "Member must not be null"
    )


@pytest.mark.parametrize(
    ("handler", "constraint"),
    [
        ("app handler", r"Member must satisfy regular expression pattern: [^\s]+"),
        ("", r"Member must satisfy regular expression pattern: [^\s]+"),
        ("h" * 129, "Member must have length less than or equal to 128"),
    ],
)
def test_bad_handler(handler: str, constraint: str) -> None:
    error = error_of(Handler=handler)
    assert error.message == one_violation(f"'{handler}'", "handler", constraint)


def test_long_description() -> None:
    error = error_of(Description="d" * 257)
    assert error.message == one_violation(
        f"'{'d' * 257}'", "description", "Member must have length less than or equal to 256"
    )


@pytest.mark.parametrize(
    ("architectures", "constraint"),
    [
        ([], "Member must have length greater than or equal to 1"),
        (["x86_64", "arm64"], "Member must have length less than or equal to 1"),
        (
            ["x86"],
            "Member must satisfy constraint: [Member must satisfy enum value set: "
            "[x86_64, arm64], Member must not be null]",
        ),
    ],
)
def test_bad_architectures(architectures: list[str], constraint: str) -> None:
    error = error_of(Architectures=architectures)
    shown = "[" + ", ".join(architectures) + "]"
    assert error.message == one_violation(f"'{shown}'", "architectures", constraint)


def test_bad_tracing_mode() -> None:
    error = error_of(TracingConfig={"Mode": "On"})
    assert error.message == one_violation(
        "'On'", "tracingConfig.mode", "Member must satisfy enum value set: [Active, PassThrough]"
    )


@pytest.mark.parametrize(
    ("logging", "field"),
    [
        ({"LogFormat": "XML"}, "loggingConfig.logFormat"),
        ({"ApplicationLogLevel": "LOUD"}, "loggingConfig.applicationLogLevel"),
        ({"SystemLogLevel": "TRACE"}, "loggingConfig.systemLogLevel"),
        ({"LogGroup": "bad group"}, "loggingConfig.logGroup"),
        ({"LogGroup": ""}, "loggingConfig.logGroup"),
    ],
)
def test_bad_logging_config(logging: dict[str, str], field: str) -> None:
    error = error_of(LoggingConfig=logging)
    assert isinstance(error, ValidationException)
    assert f"at '{field}' failed to satisfy constraint" in error.message


def test_bad_package_type() -> None:
    error = error_of(PackageType="Jar")
    assert error.message == one_violation(
        "'Jar'", "packageType", "Member must satisfy enum value set: [Zip, Image]"
    )


@pytest.mark.parametrize("key", ["1BAD", "A", "_HANDLER", "A-B"])
def test_bad_env_key_hides_the_values(key: str) -> None:
    error = error_of(Environment={"Variables": {key: "secret"}})
    assert isinstance(error, ValidationException)
    assert error.message == (
        "1 validation error detected: Value at 'environment.variables' failed to satisfy "
        "constraint: Map keys must satisfy constraint: [Member must satisfy regular expression "
        f"pattern: {ENV_KEY_PATTERN}]"
    )
    assert "secret" not in error.message


def test_bad_layer_arn() -> None:
    error = error_of(Layers=[LAYER])
    assert error.message == one_violation(
        f"'[{LAYER}]'",
        "layers",
        "Member must satisfy constraint: [Member must have length less than or equal to 2048, "
        "Member must have length greater than or equal to 1, Member must satisfy regular "
        f"expression pattern: {LAYER_VERSION_ARN_PATTERN}, Member must not be null]",
    )


def test_bad_dead_letter_target() -> None:
    error = error_of(DeadLetterConfig={"TargetArn": "queue"})
    assert "at 'deadLetterConfig.targetArn' failed to satisfy constraint" in error.message


def test_bad_snap_start() -> None:
    error = error_of(SnapStart={"ApplyOn": "Always"})
    assert error.message == one_violation(
        "'Always'",
        "snapStart.applyOn",
        "Member must satisfy enum value set: [PublishedVersions, None]",
    )


def test_long_tag_key() -> None:
    error = error_of(Tags={"k" * 129: "v"})
    assert isinstance(error, ValidationException)
    assert "at 'tags' failed to satisfy constraint: Map keys must satisfy" in error.message


def test_violations_are_reported_together() -> None:
    error = error_of(Timeout=0, MemorySize=1, Role=None)
    assert error.message == (
        "3 validation errors detected: "
        "Value null at 'role' failed to satisfy constraint: Member must not be null; "
        "Value '0' at 'timeout' failed to satisfy constraint: "
        "Member must have value greater than or equal to 1; "
        "Value '1' at 'memorySize' failed to satisfy constraint: "
        "Member must have value greater than or equal to 128"
    )


# ---------------------------------------------------------------- create: types


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        ({"MemorySize": "256"}, "MemorySize"),
        ({"Timeout": True}, "Timeout"),
        ({"Timeout": 1.5}, "Timeout"),
        ({"Environment": {"Variables": {"AA": 1}}}, "Environment.Variables"),
        ({"Environment": ["A"]}, "Environment"),
        ({"Layers": LAYER}, "Layers"),
        ({"Architectures": [1]}, "Architectures"),
        ({"Publish": "yes"}, "Publish"),
        ({"Code": "zip"}, "Code"),
        ({"Code": {"ZipFile": 5}}, "ZipFile"),
        ({"VpcConfig": "vpc"}, "VpcConfig"),
        ({"FunctionName": 7}, "FunctionName"),
        ({"EphemeralStorage": {"Size": "1"}}, "EphemeralStorage.Size"),
    ],
)
def test_wrong_types(overrides: dict[str, Any], path: str) -> None:
    error = error_of(**overrides)
    assert isinstance(error, InvalidRequestContentException)
    assert error.message.startswith("Could not parse request body into json: ")
    assert f"'{path}'" in error.message


def test_body_must_be_an_object() -> None:
    with pytest.raises(InvalidRequestContentException):
        parse_create_function([], INSTALLED)  # type: ignore[arg-type]


def test_integral_float_is_an_integer() -> None:
    assert create(MemorySize=256.0).config.memory_size == 256


# ---------------------------------------------------------------- create: service rules


def test_image_package_type_is_not_supported() -> None:
    error = error_of(PackageType="Image", Code={"ImageUri": "x"})
    assert isinstance(error, InvalidParameterValueException)
    assert "not supported by Ember" in error.message


def test_image_uri_is_not_supported() -> None:
    error = error_of(Code={"ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/x:1"})
    assert isinstance(error, InvalidParameterValueException)
    assert "Container image" in error.message


def test_s3_code_is_not_supported() -> None:
    error = error_of(Code={"S3Bucket": "b", "S3Key": "k.zip"})
    assert isinstance(error, InvalidParameterValueException)
    assert "S3 code locations" in error.message
    assert "ZipFile" in error.message


def test_code_without_source() -> None:
    error = error_of(Code={})
    assert isinstance(error, InvalidParameterValueException)
    assert error.message == "Please provide a source for function code."


@pytest.mark.parametrize("text", ["not base64!", "abc"])
def test_invalid_base64(text: str) -> None:
    error = error_of(Code={"ZipFile": text})
    assert isinstance(error, InvalidParameterValueException)
    assert "base64" in error.message


@pytest.mark.parametrize("missing", ["Runtime", "Handler"])
def test_runtime_and_handler_are_mandatory(missing: str) -> None:
    error = error_of(**{missing: None})
    assert isinstance(error, InvalidParameterValueException)
    assert error.message == (
        "Runtime and Handler are mandatory parameters for functions created with "
        "deployment packages."
    )


def test_deprecated_runtime() -> None:
    error = error_of(Runtime="python3.7")
    assert isinstance(error, InvalidParameterValueException)
    assert error.message == (
        "The runtime parameter of python3.7 is no longer supported for creating or updating "
        "AWS Lambda functions. We recommend you use a supported runtime while creating or "
        "updating functions."
    )


def test_known_but_not_installed_runtime_names_the_installed_ones() -> None:
    error = error_of(Runtime="java21")
    assert isinstance(error, InvalidParameterValueException)
    assert "java21" in error.message
    assert "Installed runtimes: provided.al2023, python3.12, python3.13." in error.message


def test_unknown_runtime() -> None:
    error = error_of(Runtime="cobol")
    assert isinstance(error, InvalidParameterValueException)
    assert error.message == (
        "Value cobol at 'runtime' failed to satisfy constraint: Member must satisfy enum value "
        f"set: [{', '.join(AWS_SUPPORTED_RUNTIMES)}] or be a valid ARN"
    )


def test_runtime_tables_are_consistent() -> None:
    assert set(KNOWN_RUNTIMES) >= DEPRECATED_RUNTIMES
    assert set(AWS_SUPPORTED_RUNTIMES) <= set(KNOWN_RUNTIMES)
    assert not DEPRECATED_RUNTIMES & set(AWS_SUPPORTED_RUNTIMES)


def test_reserved_env_keys_are_listed() -> None:
    error = error_of(Environment={"Variables": {"AWS_REGION": "x", "OK": "1", "TZ_X": "2",
                                                "AWS_LAMBDA_RUNTIME_API": "y"}})  # fmt: skip
    assert isinstance(error, InvalidParameterValueException)
    assert error.message == (
        "Lambda was unable to configure your environment variables because the environment "
        "variables you have provided contains reserved keys that are currently not supported "
        "for modification. Reserved keys used in this request: AWS_REGION, AWS_LAMBDA_RUNTIME_API"
    )


def test_environment_over_4_kb() -> None:
    variables = {"KK": "v" * 4096}
    error = error_of(Environment={"Variables": variables})
    assert isinstance(error, InvalidParameterValueException)
    assert error.message == (
        "Lambda was unable to configure your environment variables because the environment "
        "variables you have provided exceeded the 4KB limit. String measured: "
        + json.dumps(variables, separators=(",", ":"))
    )


def test_more_than_five_layers() -> None:
    error = error_of(Layers=[f"{LAYER}{i}:1" for i in range(6)])
    assert isinstance(error, InvalidParameterValueException)
    assert error.message == "Cannot reference more than 5 layers."


def test_two_versions_of_one_layer() -> None:
    error = error_of(Layers=[f"{LAYER}:1", f"{LAYER}:2"])
    assert isinstance(error, InvalidParameterValueException)
    assert error.message == (
        "Two different versions of the same layer are not allowed to be referenced in the same "
        f"function. {LAYER}:1 and {LAYER}:2 are versions of the same layer."
    )


# ---------------------------------------------------------------- update configuration

CURRENT = FunctionConfig(
    runtime="python3.12",
    handler="app.handler",
    role=ROLE,
    description="before",
    environment=create(Environment={"Variables": {"AA": "1"}}).config.environment,
    logging=LoggingConfig("JSON", None, "DEBUG", "WARN"),
    echoed=create(KMSKeyArn="k").config.echoed,
)


def test_update_changes_only_present_members() -> None:
    config, revision = parse_update_configuration(
        {"Timeout": 30, "Description": ""}, CURRENT, INSTALLED
    )
    assert revision is None
    assert config.timeout == 30
    assert config.description == ""
    assert config.handler == CURRENT.handler
    assert config.environment == CURRENT.environment
    assert config.logging == CURRENT.logging


def test_empty_update_is_a_no_op() -> None:
    assert parse_update_configuration({}, CURRENT, INSTALLED) == (CURRENT, None)


def test_update_returns_the_revision_precondition() -> None:
    assert parse_update_configuration({"RevisionId": "abc"}, CURRENT, INSTALLED)[1] == "abc"


def test_update_replaces_the_environment() -> None:
    config, _ = parse_update_configuration({"Environment": {}}, CURRENT, INSTALLED)
    assert dict(config.environment) == {}
    config, _ = parse_update_configuration(
        {"Environment": {"Variables": {"BB": "2"}}}, CURRENT, INSTALLED
    )
    assert dict(config.environment) == {"BB": "2"}


def test_update_merges_logging_config() -> None:
    config, _ = parse_update_configuration(
        {"LoggingConfig": {"SystemLogLevel": "INFO"}}, CURRENT, INSTALLED
    )
    assert config.logging == LoggingConfig("JSON", None, "DEBUG", "INFO")
    config, _ = parse_update_configuration(
        {"LoggingConfig": {"LogFormat": "Text"}}, CURRENT, INSTALLED
    )
    assert config.logging == LoggingConfig("Text", None, None, None)


def test_update_merges_echoed_members() -> None:
    config, _ = parse_update_configuration({"VpcConfig": {"SubnetIds": []}}, CURRENT, INSTALLED)
    assert dict(config.echoed) == {"KMSKeyArn": "k", "VpcConfig": {"SubnetIds": []}}


def test_update_clears_layers_and_dead_letter_target() -> None:
    current = create(
        Layers=[f"{LAYER}:1"], DeadLetterConfig={"TargetArn": "arn:aws:sns:us-east-1:1:t"}
    ).config
    config, _ = parse_update_configuration(
        {"Layers": [], "DeadLetterConfig": {}}, current, INSTALLED
    )
    assert config.layers == ()
    assert config.dead_letter_target is None


@pytest.mark.parametrize(
    ("update", "error"),
    [
        ({"Handler": ""}, ValidationException),
        ({"MemorySize": 100}, ValidationException),
        ({"Role": "nope"}, ValidationException),
        ({"Runtime": "python3.7"}, InvalidParameterValueException),
        ({"Runtime": "nodejs22.x"}, InvalidParameterValueException),
        ({"Environment": {"Variables": {"AWS_REGION": "x"}}}, InvalidParameterValueException),
        ({"Layers": [f"{LAYER}:1", f"{LAYER}:2"]}, InvalidParameterValueException),
        ({"Timeout": "3"}, InvalidRequestContentException),
    ],
)
def test_update_validates_present_members(update: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_update_configuration(update, CURRENT, INSTALLED)


def test_update_ignores_architectures_and_unknown_members() -> None:
    config, _ = parse_update_configuration(
        {"Architectures": ["nope"], "Foo": 1}, CURRENT, INSTALLED
    )
    assert config == CURRENT


# ---------------------------------------------------------------- update code


def test_update_code() -> None:
    parsed = parse_update_code(
        {
            "ZipFile": base64.b64encode(ZIP).decode(),
            "Publish": True,
            "DryRun": True,
            "RevisionId": "r1",
            "Architectures": ["arm64"],
        }
    )
    assert parsed == UpdateCodeInput(ZIP, True, "r1", True, ("arm64",))


def test_update_code_defaults() -> None:
    parsed = parse_update_code({"ZipFile": base64.b64encode(ZIP).decode()})
    assert parsed == UpdateCodeInput(ZIP)


@pytest.mark.parametrize(
    ("update", "error", "text"),
    [
        ({"S3Bucket": "b", "S3Key": "k"}, InvalidParameterValueException, "S3 code locations"),
        ({"ImageUri": "x"}, InvalidParameterValueException, "Container image"),
        ({}, InvalidParameterValueException, "Please provide a source for function code."),
        ({"ZipFile": "%%%"}, InvalidParameterValueException, "base64"),
        ({"ZipFile": "", "Architectures": ["x"]}, ValidationException, "architectures"),
        ({"ZipFile": "", "DryRun": "no"}, InvalidRequestContentException, "DryRun"),
    ],
)
def test_update_code_errors(update: dict[str, Any], error: type[ClientError], text: str) -> None:
    with pytest.raises(error) as caught:
        parse_update_code(update)
    assert text in caught.value.message
