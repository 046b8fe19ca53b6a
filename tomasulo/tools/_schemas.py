"""Tools from raw JSON schemas, and the normalization that makes messy schemas plain.

Tool schemas found in the wild (OpenAI function definitions, Anthropic tools, MCP servers,
hand-written dicts) are messy. :func:`normalize_schema` turns one into a plain, self-contained
JSON Schema (draft 2020-12) that the grammar compiler and :meth:`Tool.validate
<tomasulo.tools.Tool.validate>` can rely on. Every rule, in one place:

- ``type`` names are mapped case-insensitively: ``str`` -> ``string``, ``int`` -> ``integer``,
  ``float``/``double`` -> ``number``, ``bool`` -> ``boolean``, ``dict`` -> ``object``,
  ``list``/``tuple``/``set`` -> ``array``, ``none`` -> ``null``; ``any`` removes the constraint.
  Lists of types are mapped item by item and deduplicated. Generic names too: ``List<String>``,
  ``Map<String, Integer>``, ``String[]``, ``Optional[int]``, ``Tuple[int, ...]`` (an array of
  integers), ``Literal['a', 'b']`` (an ``enum``), unions ``int | None`` and ``Union[...]`` (an
  ``anyOf``). Any other name is a :class:`SchemaError`.
- A schema without ``type`` that has ``properties`` (or ``required``, ``additionalProperties``,
  ``patternProperties``) is an object; one with ``items`` or ``prefixItems`` is an array;
  anything else stays unconstrained.
- ``required`` must be a list of strings; duplicates are dropped, and so are names that are not
  in ``properties`` (the planner cannot know about a parameter that is not described). A draft-3
  style ``"required": true`` inside a property moves to its parent's ``required`` list.
- OpenAPI ``nullable: true`` becomes ``anyOf: [<schema>, {"type": "null"}]``.
- An ``enum`` must be a non-empty list; duplicates are dropped; when the declared ``type`` does
  not admit every value, ``type`` is replaced by the JSON types of the values.
- Local ``$ref`` (``#/definitions/...``, ``#/$defs/...``, any JSON pointer) is inlined, and
  ``definitions``/``$defs``/``$schema``/``$id`` are dropped; a recursive reference cannot be
  inlined and is a :class:`SchemaError`; so is a reference to another document.
- Draft-4 ``items: [...]`` becomes ``prefixItems``; boolean ``exclusiveMinimum`` and
  ``exclusiveMaximum`` become the numeric form.
- An object without ``properties`` (at any depth but the top) accepts any object.

A tool's parameters (:func:`normalize_parameters`) must be an object schema; a missing or
``null`` one means no arguments. At the top level ``properties`` is always present and
``additionalProperties`` defaults to ``false``, because a plan can only pass declared parameters.
The result is checked with ``jsonschema``'s ``check_schema``.
"""

from __future__ import annotations

import ast
import copy
import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import unquote

from jsonschema.exceptions import SchemaError as JSONSchemaError

from ..exceptions import SchemaError
from ._jsonschema import check_schema
from ._tool import DEFAULT_POLICY, RESERVED_NAMES, Tool, ToolPolicy, describe_value

__all__ = [
    "TOOL_NAME_PATTERN",
    "check_tool_name",
    "legal_name",
    "normalize_parameters",
    "normalize_schema",
    "tools_from_schemas",
]

#: What a tool name must look like so the plan language can write it (``math.factorial``,
#: ``get-weather``).
TOOL_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")

# Type names as JSON Schema, Python, Java, C#, TypeScript and friends write them (lower case).
_TYPE_NAMES: dict[str, str | None] = {
    **dict.fromkeys(("string", "str", "char", "character", "text"), "string"),
    **dict.fromkeys(
        ("integer", "int", "long", "short", "byte", "bigint", "biginteger", "int32", "int64"), "integer"
    ),
    **dict.fromkeys(("number", "float", "double", "decimal", "bigdecimal"), "number"),
    **dict.fromkeys(("boolean", "bool"), "boolean"),
    **dict.fromkeys(("object", "dict", "dictionary", "map", "hashmap", "record"), "object"),
    **dict.fromkeys(
        ("array", "list", "tuple", "set", "arraylist", "linkedlist", "hashset", "sequence"), "array"
    ),
    **dict.fromkeys(("null", "none"), "null"),
    **dict.fromkeys(("any", ""), None),
}
# `List<String>`, `Map<String, Integer>`, `list[str]`, `Optional[int]`, `String[]`
_GENERIC = re.compile(r"\s*([A-Za-z_][\w.]*)\s*[<\[](.*)[>\]]\s*")

# Keywords whose value is one schema, a list of schemas, or a map of name -> schema.
_ONE = (
    "additionalProperties",
    "not",
    "contains",
    "if",
    "then",
    "else",
    "propertyNames",
    "unevaluatedProperties",
    "unevaluatedItems",
    "contentSchema",
)
_MANY = ("anyOf", "oneOf", "allOf", "prefixItems")
_MAP = ("properties", "patternProperties", "dependentSchemas")
_DROPPED = ("$schema", "$id", "$defs", "definitions", "$comment")
_OBJECT_HINTS = ("properties", "required", "additionalProperties", "patternProperties")
_ARRAY_HINTS = ("items", "prefixItems")
_ANNOTATIONS = ("title", "description", "default", "examples")


_ILLEGAL = re.compile(r"[^A-Za-z0-9_.-]+")


def legal_name(name: str) -> str:
    """``name`` as a tool name the plan language can write (see :data:`TOOL_NAME_PATTERN`).

    The one mapping for every tool source (raw schemas, :func:`~tomasulo.tools.prefixed`, MCP
    servers, OpenAPI operations). A name that is legal already stays as it is. Otherwise accents
    are dropped (``über`` -> ``uber``), each run of other characters becomes one ``_`` (none at
    either end), an empty result becomes ``tool``, a name that does not start with a letter or
    ``_`` gets a ``_`` in front, and a reserved word (``join``) gets a ``_`` after.

    >>> legal_name("get weather!"), legal_name("2fa/verify"), legal_name("join"), legal_name("_x_")
    ('get_weather', '_2fa_verify', 'join_', '_x_')
    """
    if TOOL_NAME_PATTERN.fullmatch(name) and name not in RESERVED_NAMES:
        return name
    plain = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    out = "_".join(part for part in _ILLEGAL.split(plain) if part) or "tool"
    if not TOOL_NAME_PATTERN.fullmatch(out):
        out = "_" + out
    if out in RESERVED_NAMES:
        out += "_"
    return out


def check_tool_name(name: object) -> str | None:
    """Why ``name`` cannot name a tool, or ``None`` when it can."""
    if not isinstance(name, str) or not name:
        return f"a tool needs a non-empty string name, got {describe_value(name)}"
    if not TOOL_NAME_PATTERN.fullmatch(name):
        return (
            f"the tool name {name!r} cannot be written in a plan: use letters, digits, '_', '.' "
            "and '-', starting with a letter or '_'"
        )
    if name in RESERVED_NAMES:
        return f"the tool name {name!r} is reserved by the plan language; rename the tool"
    return None


def _split_type_params(text: str, sep: str = ",") -> list[str]:
    """``String, List<Integer>`` as ``["String", "List<Integer>"]`` (``sep`` at the top level)."""
    out: list[str] = []
    depth, start = 0, 0
    for i, c in enumerate(text):
        if c in "<[":
            depth += 1
        elif c in ">]":
            depth -= 1
        elif c == sep and depth == 0:
            out.append(text[start:i])
            start = i + 1
    out.append(text[start:])
    return [p.strip() for p in out if p.strip()]


def _escape(token: str | int) -> str:
    return str(token).replace("~", "~0").replace("/", "~1")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    return "object"


def _fits(value: Any, type_name: str) -> bool:
    actual = _json_type(value)
    if actual == type_name:
        return True
    if type_name == "number" and actual == "integer":
        return True
    return type_name == "integer" and actual == "number" and float(value).is_integer()


def _ordered(schema: dict[str, Any]) -> dict[str, Any]:
    """The same schema with ``type``, ``properties`` and ``required`` first, for readers."""
    head: dict[str, Any] = {k: schema[k] for k in ("type", "properties", "required") if k in schema}
    return {**head, **{k: v for k, v in schema.items() if k not in head}}


class _Normalizer:
    """One normalization pass over one schema document (``root``)."""

    def __init__(self, root: Any, *, tool: str | None, at: str, strip_titles: bool) -> None:
        self.root = root
        self.tool = tool
        self.at = at
        self.strip_titles = strip_titles
        self._expanding: list[str] = []
        self._cache: dict[str, Any] = {}

    def error(self, message: str, path: Sequence[str | int]) -> SchemaError:
        pointer = self.at + "".join("/" + _escape(p) for p in path)
        return SchemaError(message, tool=self.tool, field=pointer or "/")

    # -- one schema ----------------------------------------------------------------------------

    def node(self, schema: Any, path: tuple[str | int, ...]) -> Any:
        if isinstance(schema, bool):
            return schema
        if not isinstance(schema, Mapping):
            raise self.error(
                f"expected a schema (a JSON object or a boolean), got {describe_value(schema)}",
                path,
            )
        if "$ref" in schema:
            return self.ref(schema, path)
        nullable = schema.get("nullable", False)
        if not isinstance(nullable, bool):
            raise self.error(
                f"'nullable' must be true or false, got {describe_value(nullable)}",
                (*path, "nullable"),
            )
        out: dict[str, Any] = {}
        lifted: list[str] = []
        for key, value in schema.items():
            if key in _DROPPED or key in ("nullable", "required", "additionalItems"):
                continue
            if key == "title" and self.strip_titles:
                continue
            sub = (*path, key)
            if (
                key == "type"
                and isinstance(value, str)
                and (_GENERIC.fullmatch(value) or "[]" in value or "|" in value)
            ):
                fragment = self.type_expr(value, sub)
                out.update((k, v) for k, v in fragment.items() if k == "type" or k not in schema)
            elif key == "type":
                kind = self.type_(value, sub)
                if kind is not None:
                    out["type"] = kind
            elif key in _ONE:
                out[key] = self.node(value, sub)
            elif key in _MANY:
                out[key] = self.many(value, sub)
            elif key in _MAP:
                out[key] = self.map_(value, sub, lifted if key == "properties" else None)
            elif key == "items":
                if isinstance(value, list):  # draft 4 tuple form
                    out["prefixItems"] = self.many(value, sub)
                    extra = schema.get("additionalItems")
                    if extra is not None:
                        out["items"] = self.node(extra, (*path, "additionalItems"))
                else:
                    out["items"] = self.node(value, sub)
            elif key == "enum":
                out["enum"] = self.enum(value, sub)
            else:
                out[key] = copy.deepcopy(value)
        self.required(schema, out, lifted, path)
        self.bounds(out)
        if "type" not in out and "type" not in schema:
            if any(k in out for k in _OBJECT_HINTS):
                out = {"type": "object", **out}
            elif any(k in out for k in _ARRAY_HINTS):
                out = {"type": "array", **out}
        if "enum" in out and "type" in out:
            self.reconcile_enum(out)
        out = _ordered(out)
        return self.nullable(out) if nullable else out

    def type_(self, value: Any, path: tuple[str | int, ...]) -> str | list[str] | None:
        names = value if isinstance(value, list) else [value]
        if isinstance(value, list) and not value:
            raise self.error("'type' is an empty list, so nothing is valid; list a type", path)
        out: list[str] = []
        for i, name in enumerate(names):
            where = (*path, i) if isinstance(value, list) else path
            if not isinstance(name, str):
                raise self.error(f"a type name must be a string, got {describe_value(name)}", where)
            if name.strip().lower() not in _TYPE_NAMES:
                raise self.error(
                    f"unknown type {name!r}; use string, number, integer, boolean, object, array or null",
                    where,
                )
            kind = _TYPE_NAMES[name.strip().lower()]
            if kind is None:  # "any"
                return None
            if kind not in out:
                out.append(kind)
        return out[0] if len(out) == 1 else out

    def type_expr(self, text: str, path: tuple[str | int, ...]) -> dict[str, Any]:
        """A generic type name as a schema: ``List<String>`` is an array of strings,
        ``Map<String, Integer>`` an object of integers, ``Optional[int]`` an integer or null,
        ``String[]`` an array of strings; a parameter the schema cannot name is any value."""
        text = text.strip()
        alternatives = _split_type_params(text, "|")
        if len(alternatives) > 1:  # `int | None`, `str|list[str]`
            options = [self.type_expr(p, path) for p in alternatives]
            return {} if any(not o for o in options) else {"anyOf": options}
        if text.endswith("[]"):
            return {"type": "array", "items": self.type_expr(text[:-2], path)}
        m = _GENERIC.fullmatch(text)
        if m is None:
            kind = self.type_(text, path)
            return {} if kind is None else {"type": kind}
        base = m.group(1).rsplit(".", 1)[-1].lower()  # java.util.List<String>
        params = _split_type_params(m.group(2))
        if base == "optional" and len(params) == 1:
            inner = self.type_expr(params[0], path)
            return {"anyOf": [inner, {"type": "null"}]} if inner else {}
        if base in ("union", "either") and params:
            options = [self.type_expr(p, path) for p in params]
            return {} if any(not o for o in options) else {"anyOf": options}
        if base == "literal":  # `Literal['a', 'b']`
            return {"enum": self.literal_values(m.group(2), text, path)}
        kind = self.type_(base, path)
        if kind == "array":
            if base == "tuple" and len(params) == 2 and params[1] == "...":  # `Tuple[int, ...]`
                items = self.type_expr(params[0], path)
                return {"type": "array", "items": items} if items else {"type": "array"}
            if base == "tuple" and len(params) > 1:
                return {"type": "array", "prefixItems": [self.type_expr(p, path) for p in params]}
            items = self.type_expr(params[0], path) if len(params) == 1 else {}
            return {"type": "array", "items": items} if items else {"type": "array"}
        if kind == "object":
            value = self.type_expr(params[-1], path) if len(params) == 2 else {}
            return {"type": "object", "additionalProperties": value} if value else {"type": "object"}
        raise self.error(f"the type {text!r} takes no type parameters; write {m.group(1)!r}", path)

    def literal_values(self, inside: str, text: str, path: tuple[str | int, ...]) -> list[Any]:
        """The values of ``Literal[...]``: Python literals (strings, numbers, booleans, ``None``)."""
        try:
            values = ast.literal_eval(f"[{inside}]")
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            values = None
        plain = (str, int, float, bool, type(None))
        if not isinstance(values, list) or not values or not all(isinstance(v, plain) for v in values):
            raise self.error(
                f"the type {text!r} must list literal values (strings, numbers, true/false, None), "
                "as in Literal['a', 'b']",
                path,
            )
        return values

    def many(self, value: Any, path: tuple[str | int, ...]) -> list[Any]:
        if not isinstance(value, list) or not value:
            raise self.error(
                f"'{path[-1]}' must be a non-empty list of schemas, got {describe_value(value)}",
                path,
            )
        return [self.node(v, (*path, i)) for i, v in enumerate(value)]

    def map_(self, value: Any, path: tuple[str | int, ...], lifted: list[str] | None) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(f"'{path[-1]}' must map names to schemas, got {describe_value(value)}", path)
        out: dict[str, Any] = {}
        for name, sub in value.items():
            if lifted is not None and isinstance(sub, Mapping) and isinstance(sub.get("required"), bool):
                if sub["required"]:
                    lifted.append(name)
                sub = {k: v for k, v in sub.items() if k != "required"}
            out[name] = self.node(sub, (*path, name))
        return out

    def required(
        self,
        schema: Mapping[str, Any],
        out: dict[str, Any],
        lifted: list[str],
        path: tuple[str | int, ...],
    ) -> None:
        raw = schema.get("required", [])
        if not isinstance(raw, list):
            raise self.error(
                f"'required' must be a list of property names, got {describe_value(raw)}",
                (*path, "required"),
            )
        names: list[str] = []
        for i, name in enumerate([*raw, *lifted]):
            if not isinstance(name, str):
                raise self.error(
                    f"'required' lists property names, got {describe_value(name)}",
                    (*path, "required", i),
                )
            if name not in names:
                names.append(name)
        props = out.get("properties", {})
        names = [n for n in names if n in props]  # a name without a property is dropped
        if names:
            out["required"] = names

    def enum(self, value: Any, path: tuple[str | int, ...]) -> list[Any]:
        if not isinstance(value, list) or not value:
            raise self.error(f"'enum' must be a non-empty list of values, got {describe_value(value)}", path)
        seen: set[str] = set()
        out = []
        for v in value:
            key = json.dumps([_json_type(v), v], sort_keys=True, default=repr)
            if key not in seen:
                seen.add(key)
                out.append(copy.deepcopy(v))
        return out

    @staticmethod
    def reconcile_enum(out: dict[str, Any]) -> None:
        declared = out["type"] if isinstance(out["type"], list) else [out["type"]]
        values = out["enum"]
        if all(any(_fits(v, t) for t in declared) for v in values):
            return
        kinds: list[str] = []
        for v in values:
            k = _json_type(v)
            if k not in kinds:
                kinds.append(k)
        if "number" in kinds and "integer" in kinds:
            kinds.remove("integer")
        out["type"] = kinds[0] if len(kinds) == 1 else kinds

    @staticmethod
    def bounds(out: dict[str, Any]) -> None:
        for flag, bound in (("exclusiveMaximum", "maximum"), ("exclusiveMinimum", "minimum")):
            if isinstance(out.get(flag), bool):
                if out[flag] and bound in out:
                    out[flag] = out.pop(bound)
                else:
                    del out[flag]

    @staticmethod
    def nullable(out: dict[str, Any]) -> dict[str, Any]:
        kind = out.get("type")
        if kind == "null" or (isinstance(kind, list) and "null" in kind):
            return out
        constraint = {k: v for k, v in out.items() if k not in _ANNOTATIONS}
        if not constraint:  # unconstrained already admits null
            return out
        annotations = {k: v for k, v in out.items() if k in _ANNOTATIONS}
        return {"anyOf": [constraint, {"type": "null"}], **annotations}

    # -- references ----------------------------------------------------------------------------

    def ref(self, schema: Mapping[str, Any], path: tuple[str | int, ...]) -> Any:
        ref = schema["$ref"]
        where = (*path, "$ref")
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise self.error(
                f"only local references ('#/...') can be inlined, got {describe_value(ref)}; "
                "put the referenced schema under '$defs'",
                where,
            )
        if ref in self._expanding:
            raise self.error(
                f"the reference {ref!r} is recursive, and a recursive schema cannot be inlined; "
                "describe the recursive part as a plain object or array",
                where,
            )
        if ref in self._cache:
            resolved = copy.deepcopy(self._cache[ref])
        else:
            target, target_path = self.resolve(ref, where)
            self._expanding.append(ref)
            try:
                resolved = self.node(target, target_path)
            finally:
                self._expanding.pop()
            self._cache[ref] = copy.deepcopy(resolved)
        siblings = {k: v for k, v in schema.items() if k not in ("$ref", "nullable")}
        merged = resolved
        if siblings:
            extra = self.node(siblings, path)
            if resolved is True:
                merged = extra
            elif (
                isinstance(resolved, dict)
                and isinstance(extra, dict)
                and all(k in _ANNOTATIONS or k not in resolved for k in extra)
            ):
                merged = {**resolved, **extra}
            else:
                merged = {"allOf": [resolved, extra]}
        if schema.get("nullable") is True:
            merged = self.nullable(merged if isinstance(merged, dict) else {"allOf": [merged]})
        return merged

    def resolve(self, ref: str, where: tuple[str | int, ...]) -> tuple[Any, tuple[str | int, ...]]:
        target = self.root
        tokens: list[str | int] = []
        pointer = unquote(ref[1:])
        if pointer and not pointer.startswith("/"):
            raise self.error(f"cannot resolve the reference {ref!r}: not a JSON pointer", where)
        for raw in pointer.split("/")[1:] if pointer else []:
            token = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(target, Mapping) and token in target:
                target = target[token]
                tokens.append(token)
            elif isinstance(target, list) and token.isdigit() and int(token) < len(target):
                target = target[int(token)]
                tokens.append(int(token))
            else:
                raise self.error(f"the reference {ref!r} points at nothing", where)
        return target, tuple(tokens)

    def check(self, result: Any) -> None:
        try:
            check_schema(result)
        except JSONSchemaError as err:
            path = tuple(err.absolute_path)
            raise self.error(f"not a valid JSON schema: {err.message}", path) from None


def normalize_schema(
    schema: Any, *, tool: str | None = None, at: str = "", strip_titles: bool = False, check: bool = True
) -> Any:
    """Normalize any JSON schema (see the module docstring for the rules).

    Args:
        schema: the raw schema (a mapping or a boolean).
        tool: the tool's name, for error messages.
        at: the JSON pointer of ``schema`` inside what the user gave, for error messages.
        strip_titles: drop every ``title`` keyword (the ones pydantic generates are noise).
        check: check the result against the JSON Schema metaschema (a few milliseconds; skipped
            for schemas pydantic generated, which are valid by construction).

    Raises:
        SchemaError: naming the tool and the field (a JSON pointer) that cannot be normalized.

    >>> normalize_schema({"type": "dict", "properties": {"n": {"type": "Int"}}})
    {'type': 'object', 'properties': {'n': {'type': 'integer'}}}
    """
    n = _Normalizer(schema, tool=tool, at=at, strip_titles=strip_titles)
    result = n.node(schema, ())
    if check:
        n.check(result)
    return result


def normalize_parameters(
    schema: Any, *, tool: str | None = None, at: str = "", strip_titles: bool = False, check: bool = True
) -> dict[str, Any]:
    """Normalize a tool's input schema: an object schema whose properties are its parameters.

    ``None`` means no parameters. The result always has ``"type": "object"`` and ``properties``,
    and ``"additionalProperties": false`` unless the schema says otherwise.

    Raises:
        SchemaError: for anything :func:`normalize_schema` rejects, and for a schema that does
            not describe an object of named parameters.

    >>> normalize_parameters(None)
    {'type': 'object', 'properties': {}, 'additionalProperties': False}
    """
    if schema is None:
        schema = {}
    n = _Normalizer(schema, tool=tool, at=at, strip_titles=strip_titles)
    if not isinstance(schema, Mapping):
        raise n.error(f"the parameters must be an object schema, got {describe_value(schema)}", ())
    if schema.get("nullable") is True:
        raise n.error("the parameters cannot be null; drop 'nullable'", ("nullable",))
    result = n.node(schema, ())
    kind = result.get("type", "object") if isinstance(result, dict) else None
    if kind != "object":
        raise n.error(
            "the parameters must be an object schema ('type': 'object' with 'properties'), "
            f"not {kind!r}; wrap a single value in an object with one property",
            ("type",) if "type" in schema else (),
        )
    assert isinstance(result, dict)
    composite = [k for k in ("anyOf", "oneOf", "allOf", "not", "if") if k in result]
    if composite:
        raise n.error(
            f"the parameters must be one object schema, not a combination ('{composite[0]}'); "
            "merge the alternatives into one object whose optional properties cover them",
            (composite[0],) if composite[0] in schema else (),
        )
    result = _ordered({"properties": {}, **result, "type": "object"})
    result.setdefault("additionalProperties", False)
    if check:
        n.check(result)
    return result


def _pick(entry: Mapping[str, Any], keys: Iterable[str]) -> tuple[str | None, Any]:
    found = [k for k in keys if k in entry]
    if not found:
        return None, None
    return found[0], entry[found[0]]


def _tool_from_schema(entry: Any, index: int, functions: Mapping[str, Callable[..., Any]]) -> Tool:
    if not isinstance(entry, Mapping):
        raise SchemaError(
            f"schema #{index} must be a JSON object describing a tool, got {describe_value(entry)}"
        )
    at = ""
    if entry.get("type") == "function" and "function" in entry:  # OpenAI chat completions
        if not isinstance(entry["function"], Mapping):
            raise SchemaError(
                f"schema #{index}: 'function' must be an object, got {describe_value(entry['function'])}",
                field="/function",
            )
        entry, at = entry["function"], "/function"

    name = source_name = entry.get("name")
    if isinstance(name, str) and name and not TOOL_NAME_PATTERN.fullmatch(name):
        name = legal_name(name)  # `get weather`, `2fa`, `ns/tool`: a name a plan can write
    why = check_tool_name(name) if name is not None else "it has no 'name'; add one"
    if why is not None:
        raise SchemaError(
            f"schema #{index}: {why}",
            tool=name if isinstance(name, str) and name else None,
            field=f"{at}/name",
        )
    assert isinstance(name, str)

    description = entry.get("description") or ""
    if not isinstance(description, str):
        raise SchemaError(
            f"the description must be a string, got {describe_value(description)}",
            tool=name,
            field=f"{at}/description",
        )

    inputs = [k for k in ("parameters", "input_schema", "inputSchema") if k in entry]
    if len(inputs) > 1:
        raise SchemaError(
            f"the input schema is given twice ({' and '.join(inputs)}); keep one",
            tool=name,
            field=f"{at}/{inputs[1]}",
        )
    key = inputs[0] if inputs else "parameters"
    input_schema = normalize_parameters(entry.get(key), tool=name, at=f"{at}/{key}")

    output_schema = None
    out_key, raw_output = _pick(entry, ("outputSchema", "output_schema"))
    if out_key is not None and raw_output is not None:
        output_schema = normalize_schema(raw_output, tool=name, at=f"{at}/{out_key}")

    policy = DEFAULT_POLICY
    hints = entry.get("annotations")  # MCP tool annotations
    if isinstance(hints, Mapping) and (
        hints.get("readOnlyHint") is True or hints.get("idempotentHint") is True
    ):
        policy = ToolPolicy(idempotent=True)

    fn = functions.get(name) if name in functions else functions.get(source_name)
    if fn is not None and not callable(fn):
        raise SchemaError(
            f"the function given for this tool is not callable: {describe_value(fn)}", tool=name
        )
    return Tool(
        name=name,
        description=description,
        input_schema=input_schema,
        output_schema=output_schema,
        policy=policy,
        fn=fn,
        source_name=source_name if source_name != name else None,
    )


def tools_from_schemas(
    schemas: Sequence[Mapping[str, Any]],
    functions: Mapping[str, Callable[..., Any]] | None = None,
) -> list[Tool]:
    """Tools from raw schemas, normalized.

    Takes OpenAI function definitions (``{"type": "function", "function": {...}}`` or bare
    ``{"name", "description", "parameters"}``), Anthropic tools (``input_schema``) and MCP tools
    (``inputSchema``, ``outputSchema``, ``annotations``: a read-only or idempotent hint makes the
    tool idempotent). ``functions`` maps tool names to callables; tools without one can be
    planned but not run, and a callable for a name no schema has is an error.

    Raises:
        SchemaError: naming the tool and the field (a JSON pointer into that tool's schema).

    >>> [t] = tools_from_schemas([{"name": "get-weather", "parameters": {
    ...     "properties": {"city": {"type": "str"}}, "required": ["city", "country"]}}])
    >>> t.input_schema
    {'type': 'object', 'properties': {'city': {'type': 'string'}}, 'required': ['city'], \
'additionalProperties': False}
    """
    functions = functions or {}
    if isinstance(schemas, Mapping | str | bytes):
        raise SchemaError(
            f"expected a list of tool schemas, got {describe_value(schemas)}; wrap one in a list"
        )
    tools: list[Tool] = []
    seen: dict[str, tuple[int, str]] = {}  # plan name -> (schema index, the name it was given)
    sources: set[str] = set()
    for index, entry in enumerate(schemas):
        t = _tool_from_schema(entry, index, functions)
        original = t.source_name or t.name
        if t.name in seen:
            first, first_name = seen[t.name]
            what = (
                f"repeats the name {original!r} of schema #{first}"
                if first_name == original
                else f"({original!r}) and schema #{first} ({first_name!r}) would both be named "
                f"{t.name!r} in plans"
            )
            raise SchemaError(
                f"schema #{index} {what}; tool names must be unique: rename one of them",
                tool=t.name,
                field="/function/name" if "function" in entry else "/name",
            )
        seen[t.name] = (index, original)
        tools.append(t)
        raw = entry.get("function", entry) if isinstance(entry, Mapping) else {}
        if isinstance(raw, Mapping) and isinstance(raw.get("name"), str):
            sources.add(raw["name"])  # a renamed tool's function may go by its own name
    unknown = [name for name in functions if name not in seen and name not in sources]
    if unknown:
        raise SchemaError(
            f"a function was given for {', '.join(map(repr, unknown))} but no schema has that "
            f"name (tools: {', '.join(map(repr, seen)) or 'none'})",
            tool=unknown[0],
        )
    return tools
