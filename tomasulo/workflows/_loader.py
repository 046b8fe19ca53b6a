"""Loading a workflow file: YAML, the model, its tools, its plans, and clear errors with positions.

Integers in input defaults and input values are bounded by :data:`MAX_INTEGER_DIGITS` (checked by
``bit_length``, so hex and binary literals count too): plans, results and reports turn values
into text, and Python refuses to write longer integers as text.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .._text import did_you_mean
from ..exceptions import PlanError, ToolsetError, WorkflowError
from ..grammar import Plan, Ref, parse_path, parse_plan
from ..tools import Tool, ToolLoadError, Toolset, schema_validator
from ..views import find_lone_surrogate
from ._model import Step, Workflow
from ._tools import INPUT_TOOL, build_tools, input_tool
from ._validation import validation_error
from ._yaml import YamlDocument, decode_utf8

__all__ = ["LoadedWorkflow", "OutputRef", "load_workflow", "loads_workflow"]

#: The most decimal digits an integer input (or input default) may have: Python's default limit
#: for turning an integer into text (``sys.get_int_max_str_digits()``).
MAX_INTEGER_DIGITS = 4300
_MAX_INTEGER_BITS = math.floor(MAX_INTEGER_DIGITS * math.log2(10))


def _huge_integer(value: Any) -> int | None:
    """The bit length of the first integer in ``value`` (lists and dicts searched) over the bound."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, int) and not isinstance(item, bool):
            if item.bit_length() > _MAX_INTEGER_BITS:
                return item.bit_length()
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return None


def _huge_integer_problem(bits: int) -> str:
    digits = math.floor(bits * math.log10(2)) + 1
    return (
        f"holds an integer of about {digits} digits, more than the {MAX_INTEGER_DIGITS} an integer "
        "may have (it could not be written as text); pass it as a string"
    )


_PLACEHOLDER = re.compile(r"(?<!\{)\{([A-Za-z_][A-Za-z0-9_]*)\}(?!\})")


@dataclass(frozen=True, slots=True)
class OutputRef:
    """``name.path``: an input or a step's output, and a path inside it."""

    name: str
    path: tuple[str | int, ...] = ()

    def select(self, values: Mapping[str, Any]) -> Any:
        """The value this refers to in ``values`` (inputs and step outputs by name)."""
        return Ref(0, self.path).select(values[self.name])


@dataclass
class LoadedWorkflow:
    """A checked workflow, ready to run.

    Attributes:
        spec: the parsed file.
        path: where it was read from (``None`` for text).
        toolset: the tools its ``tools`` section names.
        plans: each plan step's parsed plan, by step id.
        step_outputs: each plan step's output reference (``$k.path``), by step id.
        outputs: the ``outputs`` section, parsed.
    """

    spec: Workflow
    path: Path | None
    toolset: Toolset
    plans: dict[str, Plan] = field(default_factory=dict)
    step_outputs: dict[str, Ref] = field(default_factory=dict)
    outputs: dict[str, OutputRef] = field(default_factory=dict)

    @property
    def step_ids(self) -> list[str]:
        """Step ids in order."""
        return self.spec.step_ids()

    def names_before(self, index: int) -> list[str]:
        """Names the step at ``index`` may read with ``input``: inputs and earlier steps."""
        return [*self.spec.inputs, *self.step_ids[:index]]

    def toolset_for(self, index: int, values: Mapping[str, Any] | None = None) -> Toolset:
        """The tools of step ``index``: the workflow's tools, plus ``input`` bound to ``values``."""
        step = self.spec.steps[index]
        tools = self.toolset if step.tools is None else self.toolset.subset(step.tools)
        names = self.names_before(index)
        if not names:
            return Toolset(tools)
        return Toolset([*tools, input_tool(names, values)])

    def error(self, message: str) -> WorkflowError:
        """A :class:`WorkflowError` for this file."""
        return WorkflowError(message, path=str(self.path) if self.path else None)

    def bind_inputs(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Check input values against their types and fill in defaults.

        Raises:
            WorkflowError: an unknown input (with a did-you-mean), a missing one, or a value of
                the wrong type.
        """
        specs = self.spec.inputs
        for key in given:
            if key not in specs:
                known = ", ".join(specs) or "none"
                raise self.error(f"unknown input {key!r}{did_you_mean(key, list(specs))}; inputs: {known}")
        out: dict[str, Any] = {}
        for name, spec in specs.items():
            if name in given:
                value = given[name]
                surrogate = find_lone_surrogate(value)
                if surrogate is not None:
                    raise self.error(
                        f"input {name!r} holds a lone surrogate ({surrogate}): bytes that are not "
                        "UTF-8 text; give it as UTF-8"
                    )
                bits = _huge_integer(value)
                if bits is not None:
                    raise self.error(f"input {name!r} {_huge_integer_problem(bits)}")
            elif not spec.required:
                out[name] = spec.default  # checked when the file was loaded; null means "none"
                continue
            else:
                raise self.error(f"missing input {name!r} ({spec.type}); give it with -i {name}=VALUE")
            errors = list(schema_validator(spec.json_schema()).iter_errors(value))
            if errors:
                raise self.error(f"input {name!r}: {errors[0].message}")
            out[name] = value
        return out

    def coerce(self, name: str, text: str) -> Any:
        """A command-line string as the value of input ``name`` (numbers, booleans, JSON)."""
        if name not in self.spec.inputs:
            specs = list(self.spec.inputs)
            raise self.error(f"unknown input {name!r}{did_you_mean(name, specs)}")
        kind = self.spec.inputs[name].type
        try:
            if kind == "string":
                return text
            if kind == "integer":
                return int(text)
            if kind == "number":
                return float(text)
            if kind == "boolean":
                lowered = text.strip().lower()
                if lowered in ("true", "yes", "1", "on"):
                    return True
                if lowered in ("false", "no", "0", "off"):
                    return False
                raise ValueError(text)
            return json.loads(text)
        except ValueError:
            if kind == "integer" and text.strip().lstrip("+-").isdigit():
                raise self.error(
                    f"input {name!r}: an integer of {len(text.strip().lstrip('+-'))} digits is more "
                    f"than the {MAX_INTEGER_DIGITS} an integer may have; pass it as a string"
                ) from None
            shown = text if len(text) <= 80 else f"{text[:80]}... ({len(text)} characters)"
            raise self.error(f"input {name!r} needs {_article(kind)}, got {shown!r}") from None

    def query_text(self, index: int, values: Mapping[str, Any]) -> str:
        """A query step's question with ``{name}`` filled from inputs and earlier outputs.

        The question is prose for the planner, not plan text; ``{{`` and ``}}`` stay literal.
        """
        from ..grammar import stringify

        query = self.spec.steps[index].query or ""
        filled = _PLACEHOLDER.sub(lambda m: stringify(values[m.group(1)]), query)
        return filled.replace("{{", "{").replace("}}", "}")


def _plan_error(doc: YamlDocument, index: int, step_id: str, exc: PlanError) -> WorkflowError:
    node = doc.node_at(("steps", index, "plan"))
    origin = doc.scalar_origin(node)
    line = column = None
    if origin is not None and exc.line:
        base_line, base_col, _ = origin
        line = base_line + exc.line  # base_line is 0-based; exc.line is 1-based
        column = base_col + max(exc.column, 1)
    message = f"step {step_id!r}: {exc.message}"
    if line is not None:
        source = doc.source_line(line)
        message += f"\n    {source}\n    {' ' * ((column or 1) - 1)}^"
    if exc.hint:
        message += f"\n  hint: {exc.hint}"
    return WorkflowError(message, path=doc.path, line=line, column=column)


def _parse_output_ref(text: str) -> OutputRef:
    match = re.match(r"^\s*\$?([A-Za-z_][A-Za-z0-9_]*)(.*?)\s*$", text)
    if match is None:
        raise ValueError(f"{text!r} is not a name with an optional path")
    return OutputRef(match.group(1), parse_path(match.group(2)))


def loads_workflow(text: str, *, path: str | os.PathLike[str] | None = None) -> LoadedWorkflow:
    """Load a workflow from YAML text (``path`` is used for messages and relative paths).

    Raises:
        WorkflowError: with the file, line and column of the first problem.
    """
    where = str(path) if path is not None else None
    folder = Path(path).resolve().parent if path is not None else None
    doc = YamlDocument(text, path=where)
    if not isinstance(doc.data, dict):
        raise WorkflowError("a workflow file is a mapping with at least `steps`", path=where)
    try:
        spec = Workflow.model_validate(doc.data)
    except ValidationError as exc:
        raise validation_error(doc, exc, Workflow, whole="workflow") from None

    tools: list[Tool] = []
    for i, entry in enumerate(spec.tools):
        try:
            tools.extend(build_tools(entry, folder))
        except ToolLoadError as exc:
            key = exc.key or "builtin"
            node = doc.node_at(("tools", i, key), key=key not in ("builtin", "import"))
            raise doc.error(str(exc), node) from None
    try:
        toolset = Toolset(tools)
    except ToolsetError as exc:
        raise doc.error(str(exc), doc.node_at(("tools",))) from None
    if INPUT_TOOL in toolset:
        raise doc.error(
            f"the tool name {INPUT_TOOL!r} is kept for reading inputs; rename your tool",
            doc.node_at(("tools",)),
        )
    loaded = LoadedWorkflow(spec=spec, path=Path(path) if path is not None else None, toolset=toolset)
    _check_defaults(doc, spec)

    step_ids = spec.step_ids()
    if len(set(step_ids)) != len(step_ids):
        dup = next(s for s in step_ids if step_ids.count(s) > 1)
        raise doc.error(f"two steps have the id {dup!r}", doc.node_at(("steps",)))
    for sid in step_ids:
        if sid in spec.inputs:
            raise doc.error(f"step id {sid!r} is also an input name", doc.node_at(("steps",)))
    for i, step in enumerate(spec.steps):
        _check_step(doc, loaded, i, step, step_ids[i])
    known = [*spec.inputs, *step_ids]
    for name, text in spec.outputs.items():
        try:
            ref = _parse_output_ref(text)
        except ValueError as exc:
            raise doc.error(f"output {name!r}: {exc}", doc.node_at(("outputs", name))) from None
        if ref.name not in known:
            raise doc.error(
                f"output {name!r} refers to {ref.name!r}, which is neither an input nor a step"
                f"{did_you_mean(ref.name, known)}",
                doc.node_at(("outputs", name)),
            )
        loaded.outputs[name] = ref
    return loaded


def _article(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _check_defaults(doc: YamlDocument, spec: Workflow) -> None:
    """Each input's default fits its type and ``enum`` (``null`` is allowed: an optional input)."""
    for name, input_spec in spec.inputs.items():
        if input_spec.required or input_spec.default is None:
            continue
        default = input_spec.default
        bits = _huge_integer(default)
        if bits is not None:
            raise doc.error(
                f"input {name!r}: the default {_huge_integer_problem(bits)}",
                doc.node_at(("inputs", name, "default")),
            )
        errors = list(schema_validator(input_spec.json_schema()).iter_errors(default))
        if not errors:
            continue
        shown = json.dumps(default, ensure_ascii=False, default=str)
        if errors[0].validator == "enum":
            choices = json.dumps(input_spec.enum, ensure_ascii=False, default=str)
            problem = f"is not one of its enum {choices}"
        else:
            problem = f"is not {_article(input_spec.type)}"
        raise doc.error(
            f"input {name!r}: the default {shown} {problem}; "
            f"give {_article(input_spec.type)} that fits, or drop the default",
            doc.node_at(("inputs", name, "default")),
        )


def _check_step(doc: YamlDocument, loaded: LoadedWorkflow, index: int, step: Step, sid: str) -> None:
    if step.tools is not None:
        for name in step.tools:
            if name not in loaded.toolset:
                raise doc.error(
                    f"step {sid!r} names the tool {name!r}, which is not in `tools`"
                    f"{did_you_mean(name, list(loaded.toolset.names))}",
                    doc.node_at(("steps", index, "tools")),
                )
    names = loaded.names_before(index)
    if step.query is not None:
        for m in _PLACEHOLDER.finditer(step.query):
            if m.group(1) not in names:
                raise doc.error(
                    f"step {sid!r}: the query uses {{{m.group(1)}}}, which is not an input or an "
                    f"earlier step{did_you_mean(m.group(1), names)}",
                    doc.node_at(("steps", index, "query")),
                )
        return
    assert step.plan is not None
    try:
        plan = parse_plan(step.plan, loaded.toolset_for(index), max_tasks=loaded.spec.limits.max_tasks)
    except PlanError as exc:
        raise _plan_error(doc, index, sid, exc) from None
    except RecursionError:
        raise doc.error(
            f"step {sid!r}: the plan nests its values too deeply to read; flatten it",
            doc.node_at(("steps", index, "plan")),
        ) from None
    if not plan.tasks:
        raise doc.error(f"step {sid!r}: the plan has no tasks", doc.node_at(("steps", index, "plan")))
    output = Ref(plan.tasks[-1].id)
    if step.output is not None:
        found = re.match(r"^\s*\$(\d+)(.*?)\s*$", step.output)
        try:
            if found is None:
                raise ValueError("write it as $k or $k.path")
            output = Ref(int(found.group(1)), parse_path(found.group(2)))
        except ValueError as exc:
            raise doc.error(
                f"step {sid!r}: bad output {step.output!r}: {exc}",
                doc.node_at(("steps", index, "output")),
            ) from None
        if output.task_id not in plan.ids:
            raise doc.error(
                f"step {sid!r}: output {step.output!r} names task {output.task_id}, "
                f"but the plan's tasks are {', '.join(map(str, plan.ids))}",
                doc.node_at(("steps", index, "output")),
            )
    loaded.plans[sid] = plan
    loaded.step_outputs[sid] = output


def load_workflow(path: str | os.PathLike[str]) -> LoadedWorkflow:
    """Read and check the workflow file at ``path``.

    >>> wf = load_workflow("examples/research.yaml")  # doctest: +SKIP
    >>> wf.step_ids  # doctest: +SKIP
    ['heights', 'compare']

    Raises:
        WorkflowError: the file is missing or has a problem (file, line and column).
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise WorkflowError(f"cannot read the workflow file: {exc.strerror}", path=str(p)) from None
    return loads_workflow(decode_utf8(data, path=str(p), what="the workflow file"), path=p)
