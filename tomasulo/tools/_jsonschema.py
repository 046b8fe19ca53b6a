"""JSON Schema semantics in one place: the draft, the types, and the one validator cache.

Every part of tomasulo that checks a value against a schema (a tool's arguments and result, the
literals of a plan, a workflow's inputs) gets its validator here, so they agree on the rules:

- a schema without ``$schema`` is read as JSON Schema draft 2020-12;
- ``boolean`` values are not ``integer`` or ``number`` values (``True`` is an ``int`` to
  Python, not to JSON Schema), and an ``integer`` is also a ``number`` (:data:`JSON_TYPES`);
- a validator is built once per schema and owner (a :class:`~tomasulo.tools.Tool`), and goes
  when its owner does.

>>> v = schema_validator({"type": "object", "properties": {"n": {"type": "integer"}}})
>>> v.is_valid({"n": 1}), v.is_valid({"n": True})
(True, False)
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator

__all__ = ["DEFAULT_DRAFT", "JSON_TYPES", "check_schema", "schema_validator", "validator_class"]

#: The draft a schema without ``$schema`` is read in.
DEFAULT_DRAFT = Draft202012Validator

#: The Python values each JSON Schema type takes (of a JSON value: ``dict``, ``list``, ``str``,
#: ``int``, ``float``, ``bool``, ``None``). ``bool`` is a subclass of ``int``: it counts as a
#: ``boolean`` only, never as an ``integer`` or ``number``.
JSON_TYPES: Mapping[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
    "null": (type(None),),
}


def validator_class(schema: Mapping[str, Any]) -> Any:
    """The validator class for ``schema``: the draft its ``$schema`` names, else 2020-12."""
    return jsonschema.validators.validator_for(schema, DEFAULT_DRAFT)


def check_schema(schema: Mapping[str, Any]) -> None:
    """Raise ``jsonschema.SchemaError`` when ``schema`` is not a valid schema of its draft."""
    validator_class(schema).check_schema(schema)


def _tuple_arrays(cls: Any) -> Any:
    def is_array(checker: Any, instance: Any) -> bool:
        return isinstance(instance, list | tuple)

    return jsonschema.validators.extend(cls, type_checker=cls.TYPE_CHECKER.redefine("array", is_array))  # type: ignore[no-untyped-call]


#: Per owner, per key: (the schema objects it was built from, the validator). Keyed weakly by
#: the owner, so validators go when the owner (a tool) does; a long-lived process builds many.
_validators: weakref.WeakKeyDictionary[Any, dict[Hashable, tuple[tuple[Any, ...], Any]]] = (
    weakref.WeakKeyDictionary()
)


def schema_validator(
    schema: Mapping[str, Any] | Callable[[], Mapping[str, Any]],
    *,
    owner: object | None = None,
    key: Hashable = None,
    source: object | None = None,
    defs_from: Mapping[str, Any] | None = None,
    tuples_are_arrays: bool = False,
) -> Any:
    """A validator for ``schema`` (see the module's rules).

    Args:
        schema: the schema to validate against, or a function that builds it (called only
            when no cached validator fits; give ``source`` with it).
        owner: what the validator belongs to (a tool); with it, the validator is cached under
            ``(owner, key)`` for as long as the owner lives and the same schema object is passed.
            Without it, a new validator is built.
        key: which of the owner's schemas this is (``"input"``, ``"output"``, ``("param", name)``).
        source: the object whose identity says the cached validator is still current, when
            ``schema`` is built afresh on each call from it (default: ``schema`` itself).
        defs_from: a root schema whose ``$defs``/``definitions`` ``schema`` may refer to
            (``#/$defs/X`` in one parameter's schema of a tool).
        tuples_are_arrays: Python tuples count as arrays (values read from plans).
    """
    if callable(schema) and source is None:
        raise TypeError("schema_validator: give `source` with a schema-building function")
    idents = (source if source is not None else schema, defs_from)
    cache: dict[Hashable, tuple[tuple[Any, ...], Any]] | None = None
    if owner is not None:
        cache = _validators.get(owner)
        if cache is None:
            cache = _validators[owner] = {}
        hit = cache.get(key)
        if hit is not None and hit[0][0] is idents[0] and hit[0][1] is idents[1]:
            return hit[1]
    full: Mapping[str, Any] = schema() if callable(schema) else schema
    if defs_from is not None:
        full = {**full, **{k: defs_from[k] for k in ("$defs", "definitions") if k in defs_from}}
    cls = validator_class(full)
    if tuples_are_arrays:
        cls = _tuple_arrays(cls)
    validator = cls(full)
    if cache is not None:
        cache[key] = (idents, validator)  # holds no reference to the owner, or it would never go
    return validator
