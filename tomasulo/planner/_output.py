"""Structured answers: the type a run's answer must have (``output_type=``), and the joiner's
decision schema that carries it."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from ..exceptions import ConfigError
from ..tools import check_schema, schema_validator

__all__ = ["OutputSpec", "decision_schema"]

#: Validation problems listed at most in a message (the repair round quotes them to the model).
_MAX_PROBLEMS = 5


class OutputSpec:
    """What a run's answer must be: a pydantic model class (or any type pydantic validates:
    a dataclass, ``list[int]``, a ``TypedDict``) or a JSON schema (a ``dict``).

    ``schema`` is the JSON schema the joiner answers under; :meth:`validate` turns a JSON
    value into the typed value (the model instance; for a JSON schema, the value itself) or
    raises ``ValueError`` saying what does not fit.

    >>> from pydantic import BaseModel
    >>> class City(BaseModel):
    ...     name: str
    ...     population: int
    >>> spec = OutputSpec.of(City)
    >>> spec.validate({"name": "Oslo", "population": 709037})
    City(name='Oslo', population=709037)
    >>> spec.to_text(City(name="Oslo", population=1))
    '{"name": "Oslo", "population": 1}'
    """

    __slots__ = ("_adapter", "_validator", "name", "output_type", "schema")

    def __init__(self, output_type: Any) -> None:
        self.output_type = output_type
        self._adapter: TypeAdapter[Any] | None = None
        self._validator: Any = None
        if isinstance(output_type, Mapping):
            schema = dict(output_type)
            try:
                check_schema(schema)
            except Exception as e:
                raise ConfigError(f"output_type is not a valid JSON schema: {_first_line(e)}") from None
            self.schema: dict[str, Any] = schema
            self._validator = schema_validator(schema)
            self.name = str(schema.get("title") or "Output")
            return
        try:
            self._adapter = TypeAdapter(output_type)
            self.schema = self._adapter.json_schema()
        except Exception as e:
            raise ConfigError(
                f"output_type must be a pydantic model, a type pydantic can validate or a JSON "
                f"schema (a dict); {output_type!r} is none of these ({_first_line(e)})"
            ) from None
        self.name = getattr(output_type, "__name__", None) or str(self.schema.get("title") or "Output")

    @classmethod
    def of(cls, output_type: Any) -> OutputSpec:
        """``output_type`` as a spec (a spec is returned as it is)."""
        return output_type if isinstance(output_type, OutputSpec) else cls(output_type)

    def validate(self, value: Any) -> Any:
        """The typed value of the JSON value ``value``.

        A string that holds JSON (a model that wrote its answer as text) is read first when
        the value itself does not fit.

        Raises:
            ValueError: it does not fit the schema; the message lists the problems.
        """
        try:
            return self._check(value)
        except ValueError:
            if isinstance(value, str):
                try:
                    inner = json.loads(value)
                except ValueError:
                    pass
                else:
                    if inner != value:
                        try:
                            return self._check(inner)
                        except ValueError:
                            pass
            raise

    def _check(self, value: Any) -> Any:
        if self._adapter is not None:
            try:
                return self._adapter.validate_python(value, strict=False)
            except ValidationError as e:
                problems = [
                    f"{'.'.join(map(str, err['loc'])) or 'the answer'}: {err['msg']}"
                    for err in e.errors()[:_MAX_PROBLEMS]
                ]
                raise ValueError(f"the answer does not fit {self.name}: " + "; ".join(problems)) from None
        errors = sorted(self._validator.iter_errors(value), key=lambda err: list(err.absolute_path))
        if errors:
            problems = [
                f"{'.'.join(map(str, err.absolute_path)) or 'the answer'}: {err.message[:200]}"
                for err in errors[:_MAX_PROBLEMS]
            ]
            raise ValueError(f"the answer does not fit {self.name}: " + "; ".join(problems))
        return value

    def to_json(self, value: Any) -> Any:
        """The JSON form of a typed value (what the journal and the service keep)."""
        if self._adapter is not None:
            return self._adapter.dump_python(value, mode="json")
        return value

    def to_text(self, value: Any) -> str:
        """The text form of a typed value: its JSON (``RunResult.answer``)."""
        return json.dumps(self.to_json(value), ensure_ascii=False)

    def __repr__(self) -> str:
        return f"OutputSpec({self.name})"


def decision_schema(
    base: Mapping[str, Any], output: OutputSpec | None, *, force_finish: bool
) -> dict[str, Any]:
    """The joiner's decision schema ``base`` (see :func:`tomasulo.grammar.joiner_schema`) with
    the finish branch's ``answer`` typed by ``output``, and only that branch with
    ``force_finish``. The answer schema's ``$defs`` move to the root, where its ``$ref`` s
    point."""
    schema = copy.deepcopy(dict(base))
    if output is not None:
        answer = copy.deepcopy(output.schema)
        defs = {**answer.pop("$defs", {}), **answer.pop("definitions", {})}
        answer.pop("$schema", None)
        schema["oneOf"][0]["properties"]["answer"] = _relocate(answer)
        if defs:
            schema["$defs"] = {k: _relocate(v) for k, v in defs.items()}
    if force_finish:
        finish = schema["oneOf"][0]
        return {"title": schema.get("title", "JoinerDecision"), **finish, **_defs_of(schema)}
    return schema


def _defs_of(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"$defs": schema["$defs"]} if "$defs" in schema else {}


def _relocate(node: Any) -> Any:
    """``#/definitions/X`` references rewritten as ``#/$defs/X`` (the root keeps one place)."""
    if isinstance(node, dict):
        out = {k: _relocate(v) for k, v in node.items()}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/definitions/"):
            out["$ref"] = "#/$defs/" + ref[len("#/definitions/") :]
        return out
    if isinstance(node, list):
        return [_relocate(v) for v in node]
    return node


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__
