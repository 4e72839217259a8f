"""A small JSON Schema checker for tool arguments (the subset tool declarations use)."""

from __future__ import annotations

from typing import Any

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "boolean": (bool,),
    "integer": (int,), "number": (int, float), "null": (type(None),),
}


def validate(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Problems found, each naming where; empty when the value fits the schema."""
    problems: list[str] = []
    where = path or "arguments"
    t = schema.get("type")
    if isinstance(t, str) and t in _TYPES:
        ok = isinstance(value, _TYPES[t]) and not (t in ("integer", "number")
                                                    and isinstance(value, bool))
        if not ok:
            return [f"{where} must be of type {t}"]
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{where} must be one of {schema['enum']}")
    if isinstance(value, dict):
        props: dict[str, Any] = schema.get("properties", {})
        for req in schema.get("required", []):
            if req not in value:
                problems.append(f"{where}.{req} is required")
        for k, v in value.items():
            if k in props:
                problems += validate(v, props[k], f"{where}.{k}")
            elif schema.get("additionalProperties") is False:
                problems.append(f"{where}.{k} is not an accepted argument")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):
            problems += validate(v, schema["items"], f"{where}[{i}]")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            problems.append(f"{where} is shorter than {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            problems.append(f"{where} is longer than {schema['maxLength']}")
    return problems
