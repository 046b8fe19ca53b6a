"""Reading an OpenAPI document: YAML or JSON, 3.0 or 3.1 as it is, Swagger 2.0 converted to 3.0.

The conversion covers what tools need: ``host``/``basePath``/``schemes`` become ``servers``;
``definitions``, ``parameters`` and ``responses`` move under ``components`` (and every ``$ref``
is rewritten); a ``body`` parameter becomes the ``requestBody`` (``consumes`` gives its media
types); ``formData`` parameters become a form or multipart body (multipart when one is a
``file``); a non-body parameter's ``type``/``items``/``enum``... become its ``schema``;
``produces`` gives the responses' media types; ``securityDefinitions`` become
``components.securitySchemes`` (``basic`` -> http basic, ``oauth2`` flows renamed as in 3.0).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ...exceptions import OpenAPIError

__all__ = ["convert_swagger2", "parse_document", "spec_version"]

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_PARAM_SCHEMA_KEYS = (
    "type",
    "format",
    "items",
    "collectionFormat",
    "default",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "enum",
    "multipleOf",
)


def parse_document(text: str | bytes, where: str) -> dict[str, Any]:
    """A JSON or YAML document as a mapping (YAML aliases are not expanded into bombs: the
    safe loader keeps shared nodes shared)."""
    try:
        try:
            data = json.loads(text)
        except ValueError:
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise OpenAPIError(f"is neither JSON nor YAML: {exc}", where=where) from None
    except RecursionError:
        raise OpenAPIError(
            "is nested too deeply to read (Python's recursion limit); it is not a usable spec",
            where=where,
        ) from None
    if not isinstance(data, dict):
        raise OpenAPIError("is not an OpenAPI document (expected a mapping at the top)", where=where)
    return data


def spec_version(doc: Mapping[str, Any], where: str) -> str:
    """``"2.0"``, ``"3.0"`` or ``"3.1"``."""
    if str(doc.get("swagger", "")).startswith("2"):
        return "2.0"
    version = str(doc.get("openapi", ""))
    if version.startswith("3.0"):
        return "3.0"
    if version.startswith("3.1") or version.startswith("3.2"):
        return "3.1"
    raise OpenAPIError(
        f"has no 'openapi: 3.x' or 'swagger: \"2.0\"' field (got {version or 'nothing'!r}); "
        "only OpenAPI 3.0, 3.1 and Swagger 2.0 are read",
        where=where,
    )


def _rewrite_refs(node: Any, memo: dict[int, Any] | None = None) -> Any:
    # a node shared by YAML aliases stays shared (one copy), so aliases cannot blow it up
    memo = {} if memo is None else memo
    if isinstance(node, dict | list) and id(node) in memo:
        return memo[id(node)]
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        memo[id(node)] = out
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                value = (
                    value.replace("#/definitions/", "#/components/schemas/")
                    .replace("#/parameters/", "#/components/parameters/")
                    .replace("#/responses/", "#/components/responses/")
                )
            out[key] = _rewrite_refs(value, memo)
        return out
    if isinstance(node, list):
        items: list[Any] = []
        memo[id(node)] = items
        items.extend(_rewrite_refs(v, memo) for v in node)
        return items
    return node


def _param_schema(param: Mapping[str, Any]) -> dict[str, Any]:
    schema = {k: copy.deepcopy(param[k]) for k in _PARAM_SCHEMA_KEYS if k in param}
    schema.pop("collectionFormat", None)
    if schema.get("type") == "file":
        schema = {"type": "string", "format": "binary"}
    if "items" in schema and isinstance(schema["items"], dict):
        schema["items"] = _param_schema(schema["items"]) if "$ref" not in schema["items"] else schema["items"]
    if param.get("x-nullable") is True:
        schema["nullable"] = True
    return schema


def _convert_operation(op: dict[str, Any], doc: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in op.items() if k not in ("parameters", "consumes", "produces", "responses")}
    consumes = op.get("consumes", doc.get("consumes")) or ["application/json"]
    produces = op.get("produces", doc.get("produces")) or ["application/json"]
    params: list[Any] = []
    form: dict[str, Any] = {}
    form_required: list[str] = []
    has_file = False
    for param in op.get("parameters", []):
        if "$ref" in param or param.get("in") not in ("body", "formData"):
            params.append(_convert_parameter(param))
            continue
        if param["in"] == "body":
            out["requestBody"] = {
                "content": {m: {"schema": param.get("schema", {})} for m in consumes},
                "required": bool(param.get("required")),
                **({"description": param["description"]} if "description" in param else {}),
            }
        else:
            has_file = has_file or param.get("type") == "file"
            prop = _param_schema(param)
            if "description" in param:
                prop["description"] = param["description"]
            form[param["name"]] = prop
            if param.get("required"):
                form_required.append(param["name"])
    if params:
        out["parameters"] = params
    if form:
        media = (
            "multipart/form-data"
            if has_file or "multipart/form-data" in consumes
            else ("application/x-www-form-urlencoded")
        )
        schema: dict[str, Any] = {"type": "object", "properties": form}
        if form_required:
            schema["required"] = form_required
        out["requestBody"] = {"content": {media: {"schema": schema}}, "required": bool(form_required)}
    responses: dict[str, Any] = {}
    for code, response in (op.get("responses") or {}).items():
        if not isinstance(response, dict) or "$ref" in response:
            responses[str(code)] = response
            continue
        converted = {k: v for k, v in response.items() if k not in ("schema", "examples")}
        if "schema" in response:
            converted["content"] = {m: {"schema": response["schema"]} for m in produces}
        responses[str(code)] = converted
    out["responses"] = responses or {"default": {"description": ""}}
    return out


def _convert_parameter(param: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in param:
        return param
    out = {k: v for k, v in param.items() if k not in _PARAM_SCHEMA_KEYS and k != "x-nullable"}
    out["schema"] = _param_schema(param)
    if param.get("collectionFormat") == "multi":
        out["explode"] = True
    return out


def _convert_security(defs: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, scheme in defs.items():
        kind = scheme.get("type")
        if kind == "basic":
            out[name] = {"type": "http", "scheme": "basic"}
        elif kind == "apiKey":
            out[name] = {k: scheme[k] for k in ("type", "name", "in", "description") if k in scheme}
        elif kind == "oauth2":
            flow = {"application": "clientCredentials", "accessCode": "authorizationCode"}.get(
                scheme.get("flow", ""), scheme.get("flow", "")
            )
            body = {k: scheme[k] for k in ("authorizationUrl", "tokenUrl") if k in scheme}
            body["scopes"] = scheme.get("scopes", {})
            out[name] = {"type": "oauth2", "flows": {flow: body}}
        else:
            out[name] = dict(scheme)
    return out


def convert_swagger2(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A Swagger 2.0 document as an OpenAPI 3.0 one (see the module docstring)."""
    src = _rewrite_refs(copy.deepcopy(dict(doc)))
    schemes = src.get("schemes") or ["https"]
    host = src.get("host")
    base = src.get("basePath", "") or ""
    servers = [{"url": f"{s}://{host}{base}"} for s in schemes] if host else [{"url": base or "/"}]
    paths: dict[str, Any] = {}
    for path, item in (src.get("paths") or {}).items():
        new_item: dict[str, Any] = {}
        for key, value in item.items():
            if key in _METHODS:
                new_item[key] = _convert_operation(value, src)
            elif key == "parameters":
                new_item[key] = [
                    _convert_parameter(p) for p in value if p.get("in") not in ("body", "formData")
                ]
            else:
                new_item[key] = value
        paths[path] = new_item
    components: dict[str, Any] = {}
    if "definitions" in src:
        components["schemas"] = src["definitions"]
    if "parameters" in src:
        components["parameters"] = {k: _convert_parameter(v) for k, v in src["parameters"].items()}
    if "responses" in src:
        components["responses"] = src["responses"]
    if "securityDefinitions" in src:
        components["securitySchemes"] = _convert_security(src["securityDefinitions"])
    out: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": src.get("info", {"title": "", "version": ""}),
        "servers": servers,
        "paths": paths,
        "components": components,
    }
    for key in ("security", "tags", "externalDocs"):
        if key in src:
            out[key] = src[key]
    return out


def read_local(path: Path) -> dict[str, Any]:
    """A spec file from disk."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise OpenAPIError(f"cannot read the spec: {exc.strerror}", where=str(path)) from None
    return parse_document(text, str(path))
