"""Checks dbt Cloud emulator responses against dbt Labs' public OpenAPI v2 spec.

The spec (`spec/dbt-cloud-openapi-v2.yaml`, a verbatim copy of dbt Labs' public
`openapi-v2.yaml`) is loaded once, its `$ref`s are inlined, and a response is validated
against the schema the spec gives for its operation's 200 answer.

Two deliberate adjustments, both to describe the wire the real service speaks:

* The published spec carries no `nullable` at all, yet the real API sends `null` for unset
  fields (`finished_at` of a running run, `git_sha`, `developer_message` of an error...; see
  the captured responses in dbt-cloud-cli's README). Every *property* therefore also accepts
  `null`; a non-null value must still match its schema, and required keys must be present.
  The envelope's own `data` and `status` stay non-nullable on success.
* The spec documents no error responses. Errors are checked against the envelope the real
  service answers with: `{"status": ResponseStatus, "data": null | object}` and
  `status.is_success == false`, `status.code` equal to the HTTP status.
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any

import yaml
from jsonschema.exceptions import best_match
from openapi_schema_validator import OAS30Validator

SPEC_PATH = Path(__file__).with_name("spec") / "dbt-cloud-openapi-v2.yaml"

_NULL = {"enum": [None]}


@functools.lru_cache(maxsize=1)
def load_spec() -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader parses the spec 10x faster
    with SPEC_PATH.open(encoding="utf-8") as handle:
        spec: dict[str, Any] = yaml.load(handle, Loader=loader)  # noqa: S506 - a safe loader
    return spec


def _resolve(node: Any, spec: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    """The node with every `$ref` inlined (a cyclic ref is left as an unconstrained schema)."""
    if isinstance(node, list):
        return [_resolve(item, spec, seen) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        if ref in seen:
            return {}
        target: Any = spec
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        return _resolve(target, spec, (*seen, ref))
    return {key: _resolve(value, spec, seen) for key, value in node.items()}


def _allow_null_properties(node: Any) -> Any:
    """Let every property also be null (see the module docstring), recursively."""
    if isinstance(node, list):
        return [_allow_null_properties(item) for item in node]
    if not isinstance(node, dict):
        return node
    result = {key: _allow_null_properties(value) for key, value in node.items()}
    properties = result.get("properties")
    if isinstance(properties, dict):
        result["properties"] = {name: {"anyOf": [_NULL, schema]} for name, schema in properties.items()}
    return result


def _strip_read_only(node: Any) -> Any:
    # `readOnly` only restricts requests; the validator would otherwise reject it in responses.
    if isinstance(node, list):
        return [_strip_read_only(item) for item in node]
    if not isinstance(node, dict):
        return node
    return {key: _strip_read_only(value) for key, value in node.items() if key != "readOnly"}


@functools.cache
def _operations() -> list[tuple[re.Pattern[str], str, dict[str, Any]]]:
    spec = load_spec()
    found = []
    for template, item in spec["paths"].items():
        parts = re.split(r"(\{[^}/]+\})", template)
        pattern = re.compile("".join("[^/]+" if part.startswith("{") else re.escape(part) for part in parts))
        for method, operation in item.items():
            if isinstance(operation, dict) and "responses" in operation:
                found.append((pattern, method.upper(), operation))
    return found


def operation_for(method: str, path: str) -> dict[str, Any]:
    """The spec's operation object for a concrete request path (no query string)."""
    for pattern, op_method, operation in _operations():
        if op_method == method.upper() and pattern.fullmatch(path):
            return operation
    raise AssertionError(f"the dbt Cloud spec has no operation {method} {path}")


@functools.cache
def success_schema(operation_id: str) -> dict[str, Any]:
    """The (resolved, null-tolerant) schema of an operation's 200 body."""
    spec = load_spec()
    for item in spec["paths"].values():
        for operation in item.values():
            if isinstance(operation, dict) and operation.get("operationId") == operation_id:
                raw = operation["responses"]["200"]["content"]["application/json"]["schema"]
                envelope = _strip_read_only(_resolve(raw, spec))
                # Relax the envelope's contents but not `data`/`status` themselves.
                properties = envelope.get("properties", {})
                relaxed = {name: _allow_null_properties(schema) for name, schema in properties.items()}
                return {**envelope, "properties": relaxed}
    raise KeyError(operation_id)


@functools.lru_cache(maxsize=1)
def error_schema() -> dict[str, Any]:
    spec = load_spec()
    status = _allow_null_properties(_resolve(spec["components"]["schemas"]["ResponseStatus"], spec))
    status = copy.deepcopy(status)
    status["properties"]["is_success"] = {"type": "boolean", "enum": [False]}
    status["required"] = [*status.get("required", []), "code"]
    return {
        "type": "object",
        "properties": {"status": status, "data": {"anyOf": [_NULL, {"type": "object"}]}},
        "required": ["status", "data"],
    }


def validate_response(method: str, path: str, status: int, body: Any) -> None:
    """Raise AssertionError when ``body`` is not what the spec (or the real error envelope) allows."""
    operation = operation_for(method, path)
    if status == 200:
        schema = success_schema(operation["operationId"])
    else:
        validate_error_body(status, body)
        return
    _check(schema, body, f"{method} {path} -> {status} ({operation['operationId']})")


def validate_error_body(status: int, body: Any) -> None:
    """Raise AssertionError unless ``body`` is dbt Cloud's error envelope for HTTP ``status``."""
    declared = body.get("status") if isinstance(body, dict) else None
    if isinstance(declared, dict) and declared.get("code") != status:
        raise AssertionError(f"status.code {declared.get('code')} differs from HTTP {status}")
    _check(error_schema(), body, f"error {status}")


def _check(schema: dict[str, Any], body: Any, what: str) -> None:
    error = best_match(OAS30Validator(schema).iter_errors(body))
    # Look through the "or null" wrapper so the message names the real mismatch.
    while error is not None and error.validator == "anyOf" and error.context:
        error = best_match([e for e in error.context if e.validator != "enum"] or error.context)
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "<body>"
        raise AssertionError(f"{what} does not match the spec at {where}: {error.message}")
