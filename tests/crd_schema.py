"""Validate custom resources offline against their CRD's openAPIV3Schema, as the API server would.

kubernetes-validate knows only the built-in kinds. For a CRD kind the schema comes from the
project's own published CRD file (vendored under deploy/crds/), and this module applies it:

- structure: the openAPIV3Schema as JSON Schema (draft 4, whose boolean exclusiveMinimum is
  OpenAPI 3.0's), with unknown fields refused wherever the CRD lists properties and does not
  keep unknown fields (x-kubernetes-preserve-unknown-fields): the API server's strict field
  validation; x-kubernetes-int-or-string and nullable mapped to their JSON types;
- CEL: each x-kubernetes-validations rule, evaluated with cel-python on ``self`` at the node
  that carries it, after the schema's defaults are applied (as the API server does before it
  runs the rules). Transition rules (``oldSelf``) concern updates and are left out; a rule
  cel-python cannot compile or evaluate is returned as unevaluated, never passed silently.

Not covered (an API server would add them): formats, admission webhooks, references to other
objects, and the Kubernetes CEL library functions cel-python lacks.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import yaml

_COPIED = (
    "type",
    "enum",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "uniqueItems",
    "required",
    "minProperties",
    "maxProperties",
    "multipleOf",
)


def to_json_schema(node: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {key: node[key] for key in _COPIED if key in node}
    if "properties" in node:
        out["properties"] = {name: to_json_schema(sub) for name, sub in node["properties"].items()}
    if "items" in node:
        out["items"] = to_json_schema(node["items"])
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        out["additionalProperties"] = to_json_schema(extra)
    elif extra is not None:
        out["additionalProperties"] = extra
    elif "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    for key in ("allOf", "anyOf", "oneOf"):
        if key in node:
            out[key] = [to_json_schema(sub) for sub in node[key]]
    if "not" in node:
        out["not"] = to_json_schema(node["not"])
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [
                *([out["type"]] if isinstance(out["type"], str) else out["type"]),
                "null",
            ]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """``value`` with the schema's defaults filled in where a field is absent (in place)."""
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                apply_defaults(sub, value[name])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name in value:
                if name not in schema.get("properties", {}):
                    apply_defaults(extra, value[name])
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            apply_defaults(schema["items"], item)
    return value


@dataclass
class Result:
    errors: list[str] = field(default_factory=list)  # schema errors and CEL rules that failed
    unevaluated: list[str] = field(default_factory=list)  # rules cel-python could not run
    rules_run: int = 0


class CRDSchema:
    """One served version of one CRD."""

    def __init__(self, crd: dict[str, Any], version: dict[str, Any]) -> None:
        self.group = crd["spec"]["group"]
        self.kind = crd["spec"]["names"]["kind"]
        self.version = version["name"]
        self.schema = version["schema"]["openAPIV3Schema"]
        root = to_json_schema(self.schema)
        # Istio's CRDs leave the object's own header out of the schema; every object has it.
        root.setdefault("properties", {}).update(
            apiVersion={"enum": [f"{self.group}/{self.version}"]},
            kind={"enum": [self.kind]},
            metadata={
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
                    "namespace": {"type": "string"},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                },
                "additionalProperties": False,
            },
        )
        root["required"] = sorted({*root.get("required", []), "apiVersion", "kind", "metadata"})
        self.validator = jsonschema.Draft4Validator(root)
        self._env = celpy.Environment()
        self._programs: dict[str, Any] = {}

    def validate(self, obj: dict[str, Any]) -> Result:
        result = Result()
        for error in sorted(self.validator.iter_errors(obj), key=lambda e: list(e.absolute_path)):
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            result.errors.append(f"{where}: {error.message}")
        if not result.errors:
            defaulted = apply_defaults(self.schema, copy.deepcopy(obj))
            self._cel(self.schema, defaulted, "", result)
        return result

    def _program(self, rule: str) -> Any:
        if rule not in self._programs:
            self._programs[rule] = self._env.program(self._env.compile(rule))
        return self._programs[rule]

    def _cel(self, schema: dict[str, Any], value: Any, where: str, result: Result) -> None:
        for check in schema.get("x-kubernetes-validations", []):
            rule = check["rule"]
            if "oldSelf" in rule:
                continue
            label = f"{where or '(root)'}: {check.get('message') or rule}"
            try:
                verdict = self._program(rule).evaluate({"self": celpy.json_to_cel(value)})
            except Exception as error:  # cel-python's parse and evaluation errors
                result.unevaluated.append(f"{label} ({type(error).__name__}: {error})")
                continue
            if isinstance(verdict, celpy.CELEvalError):
                result.unevaluated.append(f"{label} ({verdict})")
                continue
            result.rules_run += 1
            if not bool(verdict):
                result.errors.append(f"CEL rule failed at {label}")
        if isinstance(value, dict):
            properties = schema.get("properties", {})
            extra = schema.get("additionalProperties")
            for name, sub_value in value.items():
                sub = properties.get(name, extra if isinstance(extra, dict) else None)
                if sub is not None:
                    self._cel(sub, sub_value, f"{where}/{name}", result)
        elif isinstance(value, list) and "items" in schema:
            for i, item in enumerate(value):
                self._cel(schema["items"], item, f"{where}/{i}", result)


class CRDRegistry:
    """Every served version of every CRD in the given YAML files, by (apiVersion, kind)."""

    def __init__(self, paths: list[Path]) -> None:
        self.schemas: dict[tuple[str, str], CRDSchema] = {}
        self.sources: dict[tuple[str, str], Path] = {}
        for path in paths:
            for crd in yaml.load_all(path.read_text(), Loader=yaml.CSafeLoader):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                for version in crd["spec"]["versions"]:
                    if version.get("served", True):
                        schema = CRDSchema(crd, version)
                        key = (f"{schema.group}/{schema.version}", schema.kind)
                        self.schemas[key] = schema
                        self.sources[key] = path

    def get(self, obj: dict[str, Any]) -> CRDSchema | None:
        return self.schemas.get((obj.get("apiVersion", ""), obj.get("kind", "")))
