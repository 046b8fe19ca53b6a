"""``$ref`` resolution (with :mod:`referencing`) and the inlining of OpenAPI schemas into plain ones.

References are looked up with the ``referencing`` library (the one ``jsonschema`` uses): local
pointers (``#/components/schemas/Pet``) and other files next to the spec
(``common.yaml#/Error``); references to other hosts are refused (a spec must not make the loader
fetch from anywhere). :class:`Inliner` copies a schema with every reference replaced by its
target. A recursive schema (a tree node whose children are nodes) is expanded ``max_depth``
times along one path; deeper, the reference becomes an open object (``{"type": "object"}``) or,
for a target that is not an object, any value. On the way OpenAPI's dialect becomes plain JSON
Schema: ``example`` -> ``examples``; ``discriminator``, ``xml`` and ``externalDocs`` are dropped;
in request schemas ``readOnly`` properties are left out (and out of ``required``); an ``allOf``
whose parts are all objects is merged into one object. ``nullable: true`` (3.0) is left for
:func:`~tomasulo.tools.normalize_schema`, which turns it into ``anyOf [..., null]``; 3.1's
``type: [x, "null"]`` is already JSON Schema.

**Bounds.** A tiny spec can describe a huge schema (YAML aliases that share a node twice per
level, references that fan out), so the work is bounded: every schema node walked for one
document counts against :data:`MAX_DOCUMENT_NODES`, and past it loading stops with an
:class:`~tomasulo.exceptions.OpenAPIError` naming that bound. One schema (a parameter's or a
request body's) stops expanding references once it has :data:`MAX_EXPANSION_NODES` nodes (the
rest become open, as for recursion) and is refused past :data:`MAX_SCHEMA_NODES` nodes. Loading
one document may take :data:`MAX_BUILD_SECONDS` at most.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urldefrag, urlsplit

import referencing
import referencing.exceptions
from referencing.jsonschema import DRAFT202012

from ...exceptions import OpenAPIError

if TYPE_CHECKING:  # the class is documented but not exported at the top of the package
    from referencing._core import Resolver

__all__ = ["DEFAULT_MAX_DEPTH", "Inliner", "make_resolver"]

#: How many times a recursive reference is expanded along one path before it becomes open.
DEFAULT_MAX_DEPTH = 3
#: How many references one schema may expand in all; past it, references become open. Mutually
#: recursive schemas grow exponentially with depth; this keeps a tool's schema small.
MAX_EXPANSIONS = 2000
#: Nodes (mappings and lists) one schema may have before its references stop being expanded.
MAX_EXPANSION_NODES = 500
#: Nodes one schema may have at all; more (aliases or inline parts, not references) is an error.
MAX_SCHEMA_NODES = 1000
#: Schema nodes walked for one whole document, every schema and every repeat counted.
MAX_DOCUMENT_NODES = 200_000
#: The largest file a ``$ref`` may read.
MAX_REF_FILE_BYTES = 10 * 1024 * 1024
#: Seconds the schemas of one document may take to build.
MAX_BUILD_SECONDS = 30.0
_DROP = ("discriminator", "xml", "externalDocs", "example", "x-examples")
_SCHEMA_ONE = ("items", "additionalProperties", "not", "contains", "propertyNames", "if", "then", "else")
_SCHEMA_MANY = ("allOf", "anyOf", "oneOf", "prefixItems")
_SCHEMA_MAP = ("properties", "patternProperties", "$defs", "definitions")


def make_resolver(
    doc: Mapping[str, Any], base: str, load: Callable[[Path], Any], *, local_root: Path | None = None
) -> Resolver[Any]:
    """A resolver for ``doc`` (found at ``base``, a file URI or URL) that loads other files with
    ``load`` and refuses anything on the network.

    Only regular files under ``local_root`` (the spec file's directory) are read, checked after
    every symlink is resolved, and each at most :data:`MAX_REF_FILE_BYTES`; with no
    ``local_root`` (a spec given as a mapping or fetched from a URL) no file is read at all.
    """
    root = Path(os.path.realpath(local_root)) if local_root is not None else None

    def retrieve(uri: str) -> referencing.Resource[Any]:
        parts = urlsplit(uri)
        if parts.scheme != "file" or root is None:
            raise OpenAPIError(
                f"the reference {uri!r} is refused: "
                + (
                    "a spec given as a mapping or fetched from a URL may not refer to files"
                    if parts.scheme == "file"
                    else "references to other hosts are not followed"
                )
            )
        return referencing.Resource.from_contents(
            load(_local_file(Path(unquote(parts.path)), root)), default_specification=DRAFT202012
        )

    registry: referencing.Registry[Any] = referencing.Registry(retrieve=retrieve)  # type: ignore[call-arg]
    resource = referencing.Resource.from_contents(dict(doc), default_specification=DRAFT202012)
    registry = registry.with_resource(base, resource)
    return registry.resolver(base_uri=base)


def _refusal(exc: BaseException) -> str | None:
    """The message of an :class:`OpenAPIError` raised by ``retrieve`` under ``exc``, if any."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, OpenAPIError):
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    return None


def _local_file(path: Path, root: Path) -> Path:
    real = Path(os.path.realpath(path))
    if real != root and root not in real.parents:
        raise OpenAPIError(
            f"the reference to {str(path)!r} is refused: only files under the spec's directory "
            f"({root}) are read"
        )
    try:
        info = real.stat()
    except OSError as exc:
        raise OpenAPIError(f"the referenced file {str(path)!r} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise OpenAPIError(f"the reference to {str(path)!r} is refused: it is not a regular file")
    if info.st_size > MAX_REF_FILE_BYTES:
        raise OpenAPIError(
            f"the referenced file {str(path)!r} is larger than {MAX_REF_FILE_BYTES} bytes "
            "(MAX_REF_FILE_BYTES)"
        )
    return real


class Inliner:
    """Copies schemas with references inlined (see the module docstring)."""

    def __init__(self, resolver: Resolver[Any], where: str, max_depth: int = DEFAULT_MAX_DEPTH):
        self.root = resolver
        self.where = where
        self.max_depth = max_depth
        self._budget = MAX_EXPANSIONS
        self._nodes = 0  # in the schema being built
        self._document_nodes = 0
        self._deadline = time.monotonic() + MAX_BUILD_SECONDS

    def lookup(self, ref: str, resolver: Resolver[Any]) -> tuple[Any, Resolver[Any]]:
        """The target of ``ref`` and the resolver for references inside it."""
        try:
            found = resolver.lookup(ref)
        except referencing.exceptions.Unresolvable as exc:
            refused = _refusal(exc)
            if refused is not None:
                raise OpenAPIError(refused, where=self.where, pointer=urldefrag(ref)[1]) from None
            raise OpenAPIError(
                f"the reference {ref!r} cannot be resolved ({type(exc).__name__}); only references "
                "inside the spec or to files beside it are followed",
                where=self.where,
                pointer=urldefrag(ref)[1],
            ) from None
        return found.contents, found.resolver

    def deref(self, node: Any, resolver: Resolver[Any] | None = None) -> tuple[Any, Resolver[Any]]:
        """``node`` with a top-level ``$ref`` followed (parameters, request bodies, responses)."""
        resolver = resolver or self.root
        seen = 0
        while isinstance(node, Mapping) and isinstance(node.get("$ref"), str):
            node, resolver = self.lookup(node["$ref"], resolver)
            seen += 1
            if seen > 32:
                raise OpenAPIError("a chain of references that does not end", where=self.where)
        return node, resolver

    def schema(self, node: Any, *, request: bool, resolver: Resolver[Any] | None = None) -> Any:
        """A plain copy of the schema ``node`` (``request``: leave ``readOnly`` properties out)."""
        self._budget = MAX_EXPANSIONS
        self._nodes = 0
        try:
            return self._walk(node, resolver or self.root, request, {})
        except RecursionError:
            raise OpenAPIError(
                "a schema is nested too deeply to read (Python's recursion limit)", where=self.where
            ) from None

    def _count(self) -> None:
        self._nodes += 1
        self._document_nodes += 1
        if self._nodes > MAX_SCHEMA_NODES:
            raise OpenAPIError(
                f"a schema expands to more than {MAX_SCHEMA_NODES} nodes (MAX_SCHEMA_NODES); YAML "
                "aliases or repeated inline parts make it too large for a tool; simplify it",
                where=self.where,
            )
        if self._document_nodes > MAX_DOCUMENT_NODES:
            raise OpenAPIError(
                f"the spec's schemas expand to more than {MAX_DOCUMENT_NODES} nodes in all "
                "(MAX_DOCUMENT_NODES); YAML aliases or references that fan out make it too large; "
                "load fewer operations (include=...) or simplify it",
                where=self.where,
            )
        if self._document_nodes % 256 == 0:
            self.check_deadline()

    def check_deadline(self) -> None:
        """Raise :class:`OpenAPIError` when building this document has run past its time."""
        if time.monotonic() > self._deadline:
            raise OpenAPIError(
                f"building the spec's schemas took more than {MAX_BUILD_SECONDS:g} s "
                "(MAX_BUILD_SECONDS); load fewer operations (include=...) or simplify it",
                where=self.where,
            )

    def _walk(self, node: Any, resolver: Resolver[Any], request: bool, stack: dict[int, int]) -> Any:
        if isinstance(node, bool) or not isinstance(node, Mapping):
            return node
        self._count()
        if isinstance(node.get("$ref"), str):
            target, inner = self.lookup(node["$ref"], resolver)
            key = id(target)  # the same target object however the reference is spelled
            self._budget -= 1
            if self._nodes > MAX_EXPANSION_NODES:
                self._budget = -1
            if stack.get(key, 0) >= self.max_depth or self._budget < 0:
                is_object = isinstance(target, Mapping) and (
                    target.get("type") == "object" or "properties" in target
                )
                name = node["$ref"].rsplit("/", 1)[-1]
                return {
                    **({"type": "object"} if is_object else {}),
                    "description": (
                        f"a nested {name} (any value; recursion cut after {self.max_depth} levels)"
                        if self._budget >= 0
                        else f"a nested {name} (any value; the schema is too large to expand)"
                    ),
                }
            stack[key] = stack.get(key, 0) + 1
            try:
                out = self._walk(target, inner, request, stack)
            finally:
                stack[key] -= 1
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            if siblings and isinstance(out, dict):
                extra = self._walk(siblings, resolver, request, stack)
                out = {**out, **extra}
            return out
        out = {}
        for key, value in node.items():
            if key in _DROP:
                continue
            if key in _SCHEMA_ONE:
                out[key] = self._walk(value, resolver, request, stack)
            elif key in _SCHEMA_MANY and isinstance(value, list):
                out[key] = [self._walk(v, resolver, request, stack) for v in value]
            elif key in _SCHEMA_MAP and isinstance(value, Mapping):
                out[key] = {k: self._walk(v, resolver, request, stack) for k, v in value.items()}
            else:
                out[key] = value
        if "example" in node and "examples" not in node:
            out["examples"] = [node["example"]]
        if request and isinstance(out.get("properties"), dict):
            hidden = [
                k
                for k, v in out["properties"].items()
                if isinstance(v, Mapping) and v.get("readOnly") is True
            ]
            for k in hidden:
                del out["properties"][k]
            if hidden and isinstance(out.get("required"), list):
                out["required"] = [r for r in out["required"] if r not in hidden]
        if isinstance(out.get("allOf"), list):
            out = _merge_all_of(out)
        return out


def _is_object(schema: Any) -> bool:
    return (
        isinstance(schema, dict)
        and (schema.get("type", "object") == "object")
        and not any(k in schema for k in ("anyOf", "oneOf", "allOf", "not", "$ref", "enum", "const"))
    )


def _merge_all_of(schema: dict[str, Any]) -> dict[str, Any]:
    parts = schema["allOf"]
    rest = {k: v for k, v in schema.items() if k != "allOf"}
    if not all(_is_object(p) for p in parts) or not _is_object(rest):
        return schema
    props: dict[str, Any] = {}
    required: list[str] = []
    merged: dict[str, Any] = {"type": "object"}
    for part in [*parts, rest]:
        for name, sub in (part.get("properties") or {}).items():
            if name in props and props[name] != sub:
                return schema  # conflicting definitions: keep allOf for validation
            props[name] = sub
        for name in part.get("required") or []:
            if name not in required:
                required.append(name)
        for key, value in part.items():
            if key not in ("properties", "required", "type"):
                merged.setdefault(key, value)
    merged["properties"] = props
    if required:
        merged["required"] = required
    return merged
