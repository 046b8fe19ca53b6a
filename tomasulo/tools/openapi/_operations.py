"""OpenAPI operations as tools: names, one argument schema per operation, and the request it makes.

Arguments: every parameter (path-level ones too, overridden by the operation's own by name and
location) and the request body become one object schema. A body whose schema is an object with
properties is flattened: its properties are arguments; any other body (an array, a union, a
string) is one argument ``body``. Names are made identifiers (``X-Request-ID`` -> ``X_Request_ID``).

**Clashes** are resolved in one way: arguments are named in the order path, query, header,
cookie, body; a name already taken gets its location as a prefix (``id`` in the path and ``id``
in the body: ``id`` and ``body_id``; ``id`` in the query and a header ``id``: ``id`` and
``header_id``), and a number after that if it is still taken.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ...exceptions import OpenAPIError
from .._http_tool import IDEMPOTENT_METHODS
from .._source import legal_name
from ._refs import Inliner

__all__ = ["Argument", "Operation", "matches", "read_operations"]

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_LOCATIONS = ("path", "query", "header", "cookie")
#: Header parameters OpenAPI says are ignored (auth and media types have their own fields).
_IGNORED_HEADERS = frozenset({"authorization", "accept", "content-type"})
#: Header parameters that would change where or how a request goes.
_REFUSED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "cookie"})
BodyMode = Literal["json", "form", "multipart", "text", "bytes"]


@dataclass(slots=True)
class Argument:
    """One argument of an operation's tool and where it travels."""

    name: str  #: the argument's name in plans
    wire: str  #: the parameter's (or body property's) name in the request
    location: str  #: path, query, header, cookie, body (a property) or body* (the whole body)
    schema: Any
    required: bool
    style: str = ""
    explode: bool = True


@dataclass(slots=True)
class Operation:
    """One operation: what its tool is called, its arguments and how the request is made."""

    name: str
    method: str
    path: str
    operation_id: str | None
    tags: list[str]
    description: str
    arguments: list[Argument]
    body_mode: BodyMode | None = None
    body_media: str = ""
    body_required: bool = False
    idempotent: bool = False
    security: list[dict[str, list[str]]] | None = None
    examples: dict[str, Any] = field(default_factory=dict)

    def input_schema(self) -> dict[str, Any]:
        """The raw argument schema (normalized later, like any tool schema)."""
        props: dict[str, Any] = {}
        required = []
        for arg in self.arguments:
            props[arg.name] = arg.schema
            if arg.required:
                required.append(arg.name)
        out: dict[str, Any] = {"type": "object", "properties": props}
        if required:
            out["required"] = required
        return out


_IDENT = re.compile(r"[^A-Za-z0-9_]+")


def _ident(name: str) -> str:
    out = _IDENT.sub("_", name).strip("_") or "arg"
    return "_" + out if out[0].isdigit() else out


def _pick_body(content: Mapping[str, Any]) -> tuple[str, BodyMode] | None:
    media = list(content)
    for m in media:
        base = m.split(";")[0].strip().lower()
        if base == "application/json" or base.endswith("+json"):
            return m, "json"
    for m in media:
        base = m.split(";")[0].strip().lower()
        if base == "application/x-www-form-urlencoded":
            return m, "form"
        if base == "multipart/form-data":
            return m, "multipart"
    for m in media:
        base = m.split(";")[0].strip().lower()
        if base.startswith("text/") or base.endswith("xml"):
            return m, "text"
        if base == "*/*":
            return m, "json"
    return (media[0], "bytes") if media else None


def _with_description(schema: Any, description: str | None) -> Any:
    if not description or not isinstance(schema, dict) or "description" in schema:
        return schema
    return {**schema, "description": description}


def _param_examples(param: Mapping[str, Any]) -> list[Any]:
    if "example" in param:
        return [param["example"]]
    examples = param.get("examples")
    if isinstance(examples, Mapping):
        return [e["value"] for e in examples.values() if isinstance(e, Mapping) and "value" in e]
    return []


def _operation(
    path: str,
    method: str,
    op: Mapping[str, Any],
    item: Mapping[str, Any],
    doc: Mapping[str, Any],
    inliner: Inliner,
    where: str,
    idempotent_ids: Sequence[str],
) -> Operation:
    pointer = f"/paths/{path.replace('~', '~0').replace('/', '~1')}/{method}"
    params: dict[tuple[str, str], Mapping[str, Any]] = {}
    for raw in [*(item.get("parameters") or []), *(op.get("parameters") or [])]:
        param, _ = inliner.deref(raw)
        if not isinstance(param, Mapping) or "name" not in param or param.get("in") not in _LOCATIONS:
            raise OpenAPIError(
                "a parameter needs a 'name' and 'in' (path, query, header or cookie)",
                where=where,
                pointer=pointer + "/parameters",
            )
        if param["in"] == "header":
            lowered = str(param["name"]).lower()
            if lowered in _IGNORED_HEADERS:
                continue  # OpenAPI: such a header parameter "SHALL be ignored"
            if lowered in _REFUSED_HEADERS:
                raise OpenAPIError(
                    f"the header parameter {param['name']!r} is refused: a call may not set it",
                    where=where,
                    pointer=pointer + "/parameters",
                )
        params[(param["in"], param["name"])] = param
    taken: set[str] = set()
    arguments: list[Argument] = []
    examples: dict[str, Any] = {}

    def add(wire: str, location: str, schema: Any, required: bool, **kw: Any) -> Argument:
        base = _ident(wire)
        name = base
        if name in taken:
            name = f"{location.rstrip('*')}_{base}"
        n = 2
        while name in taken:
            name = f"{location.rstrip('*')}_{base}_{n}"
            n += 1
        taken.add(name)
        arg = Argument(name, wire, location, schema, required, **kw)
        arguments.append(arg)
        return arg

    for location in _LOCATIONS:
        for (loc, wire), param in params.items():
            if loc != location:
                continue
            if "schema" in param:
                schema = inliner.schema(param["schema"], request=True)
            elif isinstance(param.get("content"), Mapping) and param["content"]:
                first = next(iter(param["content"].values()))
                schema = inliner.schema((first or {}).get("schema", {}), request=True)
            else:
                schema = {"type": "string"}
            schema = _with_description(schema, param.get("description"))
            found = _param_examples(param)
            if found and isinstance(schema, dict) and "examples" not in schema:
                schema = {**schema, "examples": found}
            default_style = "form" if location in ("query", "cookie") else "simple"
            style = str(param.get("style", default_style))
            arg = add(
                wire,
                location,
                schema,
                location == "path" or bool(param.get("required")),
                style=style,
                explode=bool(param.get("explode", style == "form")),
            )
            if found:
                examples[arg.name] = found[0]

    body_mode: BodyMode | None = None
    body_media = ""
    body_required = False
    if "requestBody" in op:
        body, body_resolver = inliner.deref(op["requestBody"])
        content = body.get("content") or {} if isinstance(body, Mapping) else {}
        picked = _pick_body(content)
        if picked is not None:
            body_media, body_mode = picked
            body_required = bool(body.get("required"))
            media_obj = content[body_media] or {}
            schema = inliner.schema(media_obj.get("schema", {}), request=True, resolver=body_resolver)
            body_examples = _param_examples(media_obj)
            flat = (
                body_mode in ("json", "form", "multipart")
                and isinstance(schema, dict)
                and schema.get("type", "object") == "object"
                and isinstance(schema.get("properties"), dict)
                and bool(schema["properties"])
                and not any(k in schema for k in ("anyOf", "oneOf", "allOf"))
            )
            if flat:
                needed = set(schema.get("required") or []) if body_required else set()
                for prop, sub in schema["properties"].items():
                    arg = add(prop, "body", sub, prop in needed)
                    if body_examples and isinstance(body_examples[0], Mapping) and prop in body_examples[0]:
                        examples[arg.name] = body_examples[0][prop]
            else:
                if body_mode in ("text", "bytes"):
                    schema = {"type": "string"}
                arg = add("body", "body*", _with_description(schema, body.get("description")), body_required)
                if body_examples:
                    examples[arg.name] = body_examples[0]

    for arg in arguments:  # examples inside the schemas (`example:` on a property or parameter schema)
        found_in = arg.schema.get("examples") if isinstance(arg.schema, Mapping) else None
        if arg.name not in examples and isinstance(found_in, list) and found_in:
            examples[arg.name] = found_in[0]

    op_id = op.get("operationId")
    name = legal_name(str(op_id)) if op_id else legal_name(f"{method}_{path.strip('/')}")
    summary = op.get("summary") or ""
    text = op.get("description") or ""
    description = summary if not text else (f"{summary}. {text}" if summary else text)
    description = " ".join(description.split()) or f"{method.upper()} {path}"
    security = op.get("security", doc.get("security"))
    idempotent = (
        method.upper() in IDEMPOTENT_METHODS
        or op.get("x-idempotent") is True
        or (op_id is not None and op_id in idempotent_ids)
        or name in idempotent_ids
    )
    return Operation(
        name=name,
        method=method.upper(),
        path=path,
        operation_id=str(op_id) if op_id else None,
        tags=[str(t) for t in op.get("tags") or []],
        description=description,
        arguments=arguments,
        body_mode=body_mode,
        body_media=body_media,
        body_required=body_required,
        idempotent=idempotent,
        security=security if isinstance(security, list) else None,
        examples=examples,
    )


def matches(op: Operation, pattern: str) -> bool:
    """Whether ``pattern`` picks ``op``: ``tag:NAME``, ``path:GLOB``, ``id:GLOB`` pick by one field;
    a bare pattern (a glob) matches the operationId, the tool name, a tag, the path (when it
    starts with ``/``) or ``METHOD /path``."""
    kind, sep, rest = pattern.partition(":")
    if sep and kind in ("tag", "path", "id"):
        if kind == "tag":
            return any(fnmatch.fnmatchcase(t, rest) for t in op.tags)
        if kind == "path":
            return fnmatch.fnmatchcase(op.path, rest)
        return fnmatch.fnmatchcase(op.operation_id or "", rest) or fnmatch.fnmatchcase(op.name, rest)
    candidates = [op.operation_id or "", op.name, *op.tags, f"{op.method} {op.path}"]
    if pattern.startswith("/"):
        candidates.append(op.path)
    return any(fnmatch.fnmatchcase(c, pattern) for c in candidates if c)


def read_operations(
    doc: Mapping[str, Any],
    inliner: Inliner,
    where: str,
    *,
    include: Sequence[str] | None,
    exclude: Sequence[str] | None,
    idempotent: Sequence[str] = (),
) -> list[Operation]:
    """Every operation of ``doc`` that ``include`` (all when ``None``) picks and ``exclude`` does
    not, with unique tool names (a repeated name gets ``_2``, ``_3``...)."""
    paths = doc.get("paths") or {}
    if not isinstance(paths, Mapping):
        raise OpenAPIError("'paths' must be a mapping", where=where, pointer="/paths")
    out: list[Operation] = []
    names: set[str] = set()
    for path, raw_item in paths.items():
        item, _ = inliner.deref(raw_item)
        if not isinstance(item, Mapping):
            continue
        for method in METHODS:
            op = item.get(method)
            if not isinstance(op, Mapping):
                continue
            operation = _operation(str(path), method, op, item, doc, inliner, where, idempotent)
            if include is not None and not any(matches(operation, p) for p in include):
                continue
            if exclude and any(matches(operation, p) for p in exclude):
                continue
            base, n = operation.name, 2
            while operation.name in names:
                operation.name = f"{base}_{n}"
                n += 1
            names.add(operation.name)
            out.append(operation)
    return out
