"""Requests checked against botocore's service models, offline. botocore's own ParamValidator
checks names, types, required members and minimums; `strict_problems` adds what it leaves to the
service: maximum lengths and values, enums and patterns."""

import re

import botocore.session
from botocore.model import StructureShape
from botocore.validate import ParamValidator

_SESSION = botocore.session.get_session()


def operation(service, name):
    return _SESSION.get_service_model(service).operation_model(name)


def problems(service, operation_name, params):
    """Everything the service model refuses in `params`, as readable lines."""
    shape = operation(service, operation_name).input_shape
    report = ParamValidator().validate(params, shape)
    found = [line for line in report.generate_report().splitlines() if line.strip()] if report.has_errors() else []
    found += strict_problems(params, shape, operation_name)
    return found


def shape_problems(service, shape_name, value):
    """The same for a value of one named shape (a fragment such as AuthorizerConfiguration)."""
    shape = _SESSION.get_service_model(service).shape_for(shape_name)
    holder = StructureShape(
        "Holder",
        {"type": "structure", "required": ["value"], "members": {"value": {"shape": shape_name}}},
        shape_resolver=shape._shape_resolver,
    )
    report = ParamValidator().validate({"value": value}, holder)
    found = [line for line in report.generate_report().splitlines() if line.strip()] if report.has_errors() else []
    found += strict_problems(value, shape, shape_name)
    return found


def strict_problems(value, shape, path):
    found = []
    meta = shape.metadata
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        for name, member in shape.members.items():
            if name in value:
                found += strict_problems(value[name], member, f"{path}.{name}")
    elif kind == "list" and isinstance(value, list):
        if "max" in meta and len(value) > meta["max"]:
            found.append(f"{path}: {len(value)} items, at most {meta['max']}")
        for index, item in enumerate(value):
            found += strict_problems(item, shape.member, f"{path}[{index}]")
    elif kind == "map" and isinstance(value, dict):
        if "max" in meta and len(value) > meta["max"]:
            found.append(f"{path}: {len(value)} entries, at most {meta['max']}")
        for key, item in value.items():
            found += strict_problems(key, shape.key, f"{path} key {key!r}")
            found += strict_problems(item, shape.value, f"{path}[{key!r}]")
    elif kind == "string" and isinstance(value, str):
        if "max" in meta and len(value) > meta["max"]:
            found.append(f"{path}: {len(value)} characters, at most {meta['max']}")
        if shape.enum and value not in shape.enum:
            found.append(f"{path}: {value!r} is not one of {shape.enum}")
        pattern = meta.get("pattern")
        if pattern and _compiled(pattern).fullmatch(value) is None:
            found.append(f"{path}: {value!r} does not match {pattern}")
    elif kind in ("integer", "long") and isinstance(value, int):
        if "max" in meta and value > meta["max"]:
            found.append(f"{path}: {value} is above the maximum {meta['max']}")
    return found


# Java regex constructs of the service models, in Python's syntax: a UTF-16 surrogate-pair
# range (the supplementary planes) and the Unicode classes the models use.
_JAVA = [
    (r"\uD800\uDC00-\uDBFF\uDFFF", "\U00010000-\U0010FFFF"),
    (r"[\p{L}\p{Z}\p{N}", r"[\w\s"),
    (r"\p{Print}", r"[\x20-\x7E]"),
    (r"[^\p{C}]", r"[^\x00-\x1f\x7f-\x9f]"),
    (r"[\w-_]", r"[\w_-]"),
]


def _compiled(pattern):
    try:
        return re.compile(pattern)
    except re.error:
        for java, python in _JAVA:
            pattern = pattern.replace(java, python)
        return re.compile(pattern)


def coerce(value, shape):
    """What CloudFormation does to property values: numbers and strings converted to the type the
    API wants (template parameters are strings; environment values are strings)."""
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        return {k: coerce(v, shape.members[k]) if k in shape.members else v for k, v in value.items()}
    if kind == "list" and isinstance(value, list):
        return [coerce(v, shape.member) for v in value]
    if kind == "map" and isinstance(value, dict):
        return {k: coerce(v, shape.value) for k, v in value.items()}
    if kind in ("integer", "long") and isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    if kind == "double" and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    if kind == "boolean" and isinstance(value, str) and value in ("true", "false"):
        return value == "true"
    if kind == "string" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


def request(service, operation_name, params):
    """`params` coerced to the operation's input shape, ready for `problems`."""
    return coerce(params, operation(service, operation_name).input_shape)
