"""A small checker for the subset of JSON Schema that zod emits for the protocol's messages
(protocol.schema.json, generated from src/bridge/protocol.ts by `npm run protocol:schema`).

It reads values as the controller does (JavaScript numbers): an integer field holding an integral
float is read as that integer (and replaced by it), bools are not numbers, a string's length counts
UTF-16 code units. `x-non-finite: true` lets a number be NaN or infinite (a diverged loss); other
numbers must be finite, as zod's are. A keyword outside the subset is an error when the schema is
loaded, so a new zod feature cannot pass unchecked.
"""
import math
from typing import Any, Dict, List

KEYWORDS = {"type", "properties", "required", "additionalProperties", "propertyNames", "items", "minItems",
            "maxItems", "minimum", "maximum", "exclusiveMinimum", "minLength", "maxLength", "enum", "anyOf",
            "x-non-finite", "description", "$comment"}
_NAMES = {"integer": "int", "number": "number", "string": "str", "boolean": "bool", "object": "map", "array": "list",
          "null": "null"}
MAX_SAFE_INTEGER = 2**53 - 1
_LEAF_TYPES = ("number", "string", "boolean", "null")  # a schema of only one of these types needs one check
_INT_KEYS = {"type", "minimum", "maximum"}


class SchemaError(ValueError):
    """A value that does not match; the message names the field (`where`) and what it must be."""


def check_keywords(schema: Any, where: str = "schema") -> None:
    """Raise ValueError when `schema` uses a keyword this checker does not implement."""
    if isinstance(schema, list):
        for s in schema:
            check_keywords(s, where)
        return
    if not isinstance(schema, dict):
        return
    unknown = set(schema) - KEYWORDS
    if unknown:
        raise ValueError(f"{where}: JSON Schema keyword(s) {', '.join(sorted(unknown))} are not implemented by "
                         f"trqat.json_schema; extend it")
    for key, sub in schema.items():
        if key == "properties":
            for name, s in sub.items():
                check_keywords(s, f"{where}.{name}")
        elif key in ("items", "additionalProperties", "propertyNames", "anyOf"):
            check_keywords(sub, where)


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "bool", dict: "map", list: "list", int: "int", float: "float", str: "str"}.get(type(value),
                                                                                              type(value).__name__)


def describe(schema: Dict[str, Any]) -> str:
    """What a schema wants, in words: "int", "str or null", "number or list of numbers"."""
    if "anyOf" in schema:
        return " or ".join(describe(s) for s in schema["anyOf"])
    if "enum" in schema:
        return "one of " + ", ".join(str(v) for v in schema["enum"])
    types = schema.get("type")
    names: List[str] = []
    for t in types if isinstance(types, list) else [types] if types else []:
        if t == "array" and isinstance(schema.get("items"), dict) and schema["items"]:
            names.append("list of " + " or ".join(n + "s" for n in describe(schema["items"]).split(" or ")))
        else:
            names.append(_NAMES[t])
    return " or ".join(names) or "anything"


def _utf16_length(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


def _is_type(value: Any, t: str, non_finite: bool) -> bool:
    if t == "null":
        return value is None
    if t == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if t == "number":
        return isinstance(value, int) or (isinstance(value, float) and (non_finite or math.isfinite(value)))
    if t == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    return isinstance(value, {"string": str, "object": dict, "array": list}[t])


def _label(path: str) -> str:
    return f"field '{path}'" if path else "message"


def validate(value: Any, schema: Dict[str, Any], path: str = "") -> Any:
    """`value` when it matches `schema` (integral floats of integer fields made ints), else SchemaError
    naming the field (`path`, dotted: "body.state.K"; "" is the whole message)."""
    types = schema.get("type")
    if len(schema) == 1 and types in _LEAF_TYPES and _is_type(value, types, False):
        return value  # the common leaf (a finite number, a string, a bool): one check, nothing to convert
    if (types == "integer" and type(value) is int and schema.keys() <= _INT_KEYS and abs(value) <= MAX_SAFE_INTEGER
            and schema.get("minimum", value) <= value <= schema.get("maximum", value)):
        return value  # an int within its bounds (a step, a count)
    where = _label(path)
    if "anyOf" in schema:
        # the options that can match the value's type first: a failed option costs an exception
        for option in schema["anyOf"]:
            if not isinstance(option.get("type"), str) or _is_type(value, option["type"], True):
                try:
                    return validate(value, option, path)
                except SchemaError:
                    pass
        errors = []
        for option in schema["anyOf"]:
            try:
                return validate(value, option, path)
            except SchemaError as e:
                errors.append((option, e))
        # the option of the value's own type (a map where a map or null is wanted) says what is wrong inside it
        own = [e for option, e in errors if isinstance(option.get("type"), str) and option["type"] not in ("number", "integer")
               and _is_type(value, option["type"], True)]
        if len(own) == 1:
            raise own[0]
        raise SchemaError(f"{where} must be {describe(schema)}, got {type_name(value)}")
    if "enum" in schema and not any(value == v and type(value) is type(v) for v in schema["enum"]):
        raise SchemaError(f"{where} must be {describe(schema)}, got {value!r}")
    if types is not None:
        options = types if isinstance(types, list) else [types]
        matched = next((t for t in options if _is_type(value, t, bool(schema.get("x-non-finite")))), None)
        if matched is None:
            raise SchemaError(f"{where} must be {describe({'type': types, 'items': schema.get('items')})}, "
                              f"got {type_name(value)}")
        if matched == "integer":
            value = int(value)
            if abs(value) > MAX_SAFE_INTEGER:
                raise SchemaError(f"{where} must be a safe integer (at most 2^53 - 1 in size), got {value}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and not value >= schema["minimum"]:
            raise SchemaError(f"{where} must be >= {schema['minimum']}, got {value}")
        if "exclusiveMinimum" in schema and not value > schema["exclusiveMinimum"]:
            raise SchemaError(f"{where} must be > {schema['exclusiveMinimum']}, got {value}")
        if "maximum" in schema and not value <= schema["maximum"]:
            raise SchemaError(f"{where} must be <= {schema['maximum']}, got {value}")
    if isinstance(value, str):
        n = _utf16_length(value)
        if "minLength" in schema and n < schema["minLength"]:
            raise SchemaError(f"{where} must have at least {schema['minLength']} character(s), got {n}")
        if "maxLength" in schema and n > schema["maxLength"]:
            raise SchemaError(f"{where} must have at most {schema['maxLength']} characters, got {n}")
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            raise SchemaError(f"{where} must have at least {schema['minItems']} items, got {len(value)}")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise SchemaError(f"{where} must have at most {schema['maxItems']} items, got {len(value)}")
        if isinstance(schema.get("items"), dict):
            value[:] = [validate(v, schema["items"], f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        _validate_map(value, schema, path)
    return value


def _validate_map(value: Dict[Any, Any], schema: Dict[str, Any], path: str) -> None:
    where, prefix = _label(path), f"{path}." if path else ""
    names = schema.get("propertyNames")
    if names is not None:
        for key in value:
            if not isinstance(key, str):
                raise SchemaError(f"{where} must have string keys, got {type_name(key)} key {key!r}")
    for key in schema.get("required", []):
        if key not in value:
            raise SchemaError(f"field '{prefix}{key}' is missing")
    properties = schema.get("properties", {})
    for key, sub in properties.items():
        if key in value:
            value[key] = validate(value[key], sub, prefix + key)
    extra = schema.get("additionalProperties")
    if extra is False:
        unknown = [k for k in value if k not in properties]
        if unknown:
            raise SchemaError(f"{where} has unknown field(s) {', '.join(map(repr, unknown))}")
    elif isinstance(extra, dict) and extra:
        for key in value:
            if key not in properties:
                value[key] = validate(value[key], extra, prefix + key)
