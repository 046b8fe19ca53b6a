"""Prompts for the planner and the joiner, built from the toolset and the run so far.

The prompts are laid out for servers with a prefix cache (vLLM's automatic prefix caching,
SGLang's radix cache, OpenAI's prompt caching): every call of a run starts with the same
messages, the planner's system text (tools, rules, examples: the same for every run with the
same toolset and settings) and the question. A replan and the joiner extend that prefix with
the plan so far (as the assistant's turn) and a user turn with the results and what is asked,
so a caching server prefills only the new part. Nothing that changes between the calls of a run
(the next task number, the results) is written into the shared part.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..grammar import Plan, Task, stringify
from ..tools import Toolset
from ._conversation import Turn, history_text

__all__ = [
    "PlanContext",
    "TaskReport",
    "joiner_messages",
    "planner_messages",
    "render_results",
    "tool_catalog",
    "tool_specs",
    "turn_messages",
]

#: Results longer than this are clipped in prompts (the full value stays addressable as $k).
MAX_RESULT_CHARS = 1200

TEXT_RULES = """\
Write the plan in this exact format:
- One task per line: `N. tool(arg, key=value)`. Task numbers start at 1 (a continuation starts at the
  number it is given) and rise by one.
- Argument values are JSON literals: "double-quoted strings", numbers, true, false, null, [arrays],
  {{"objects": 1}}. Positional arguments come first, in the order the tool lists them.
- `$k` passes task k's result as a typed value; `$k.field` and `$k[0]` select a part of it.
  "${{k}}" inside a string inserts task k's result as text. Refer only to tasks with smaller numbers.
- Tasks that do not need each other's results must not refer to each other: they run in parallel.
- A line `Thought: ...` before a task may say why it is needed.
- End the plan with `N. join()` and write nothing after it. When the answer is the results put
  into a sentence, end it with the answer instead: `N. join("Everest is ${{3}} times as tall")`,
  interpolating earlier tasks as "${{k}}"; it is given as soon as those tasks succeed.
- Use at most {max_tasks} tasks."""

JSON_RULES = """\
Answer with one JSON object: {{"tasks": [{{"id": 1, "tool": "name", "args": {{...}}}}, ...]}}.
- Task ids start at 1 (a continuation starts at the id it is given) and rise by one; arguments
  are given by name in "args".
- {{"$ref": k}} passes task k's result as a typed value; {{"$ref": k, "path": "field[0]"}} selects a
  part of it; "${{k}}" inside a string inserts task k's result as text. Refer only to smaller ids.
- Tasks that do not need each other's results must not refer to each other: they run in parallel.
- The end of the "tasks" array ends the plan. Use at most {max_tasks} tasks.
- When the answer is the results put into a sentence, add it after the tasks:
  "answer": "Everest is ${{3}} times as tall"; it is given as soon as those tasks succeed."""

TEXT_EXAMPLE = """\
Example (with tools search(query) and math(expression)):
Question: How many times taller is Mount Everest than Mount Kilimanjaro?
Thought: The two heights are independent.
1. search(query="Mount Everest height in meters")
2. search(query="Mount Kilimanjaro height in meters")
Thought: Divide once both are known.
3. math(expression="${1} / ${2}")
4. join("Mount Everest is ${3} times as tall as Mount Kilimanjaro.")"""

JSON_EXAMPLE = """\
Example (with tools search(query) and math(expression)):
Question: How many times taller is Mount Everest than Mount Kilimanjaro?
{"tasks": [{"id": 1, "tool": "search", "args": {"query": "Mount Everest height in meters"}},
           {"id": 2, "tool": "search", "args": {"query": "Mount Kilimanjaro height in meters"}},
           {"id": 3, "tool": "math", "args": {"expression": "${1} / ${2}"}}],
 "answer": "Mount Everest is ${3} times as tall as Mount Kilimanjaro."}"""

MODE_RULES = {
    "plan": "",
    "react": (
        "\nWork step by step: write exactly ONE task (then join()), or only `N. join()` when the "
        "results so far answer the question."
    ),
    "parallel_fc": (
        "\nWork in rounds: write the tasks that can run now, none of them referring to another task "
        "of this round (they all run at once); earlier rounds' results may be used. Write only "
        "`N. join()` when the results so far answer the question."
    ),
}


def tool_catalog(tools: Toolset) -> str:
    """Each tool's signature, description and parameters, for the planner's prompt.

    A parameter that is an object (a pydantic model, a nested schema) is described field by
    field, nested objects and arrays of objects too: each field's name (``?`` when optional),
    type, bounds, default and description, so the planner can write the whole value.

    >>> from pydantic import BaseModel, Field
    >>> from tomasulo.tools import Toolset, tool
    >>> class Point(BaseModel):
    ...     x: float = Field(description="metres east")
    ...     y: float = 0
    >>> @tool
    ... def move(to: Point):
    ...     "Move somewhere."
    >>> print(tool_catalog(Toolset([move])))
    - move(to: object)
      Move somewhere.
        to: object
          x: number - metres east
          y?: number (default 0)
    """
    blocks = []
    for t in tools:
        lines = [f"- {t.signature()}"]
        if t.description:
            lines.append(f"  {_first_paragraph(t.description)}")
        budget = [_MAX_FIELD_LINES]
        for name, schema in t.input_schema.get("properties", {}).items():
            if not isinstance(schema, dict):
                continue
            desc = schema.get("description")
            fields = _field_lines(schema, 6, 1, budget)
            bounds = _bounds_note(schema)
            if desc:
                lines.append(f"    {name}: {desc}{bounds}")
            elif fields or bounds:
                lines.append(f"    {name}: {_type_of(schema)}{bounds}")
            lines.extend(fields)
        if t.output_schema:
            lines.append(f"  returns: {_schema_brief(t.output_schema)}")
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


#: Nested fields listed per tool at most (a huge model would crowd out everything else).
_MAX_FIELD_LINES = 60
#: Objects inside objects are described this deep at most.
_MAX_FIELD_DEPTH = 4


def _variants(schema: Mapping[str, Any]) -> list[Any]:
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            return list(schema[key])
    return [schema]


def _object_parts(schema: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The object schemas with named fields that a value of ``schema`` may be (itself, an
    option of its ``anyOf``/``oneOf``, or its items when it is an array)."""
    out: list[Mapping[str, Any]] = []
    for v in _variants(schema):
        if not isinstance(v, Mapping):
            continue
        if v.get("type") == "array" and isinstance(v.get("items"), Mapping):
            out.extend(_object_parts(v["items"]))
        elif isinstance(v.get("properties"), Mapping) and v["properties"]:
            out.append(v)
    return out


def _field_lines(schema: Mapping[str, Any], indent: int, depth: int, budget: list[int]) -> list[str]:
    """One line per field of the objects ``schema`` holds, nested ones indented below."""
    if depth > _MAX_FIELD_DEPTH:
        return []
    parts = _object_parts(schema)
    lines: list[str] = []
    pad = " " * indent
    for i, part in enumerate(parts):
        if len(parts) > 1:
            lines.append(f"{pad}option {i + 1}:")
        sub_pad = pad + ("  " if len(parts) > 1 else "")
        required = set(part.get("required", ()))
        for name, sub in part["properties"].items():
            if budget[0] <= 0:
                lines.append(f"{sub_pad}...")
                return lines
            budget[0] -= 1
            sub = sub if isinstance(sub, Mapping) else {}
            opt = "" if name in required else "?"
            line = f"{sub_pad}{name}{opt}: {_type_of(sub)}"
            notes = _notes(sub)
            if notes:
                line += f" ({notes})"
            desc = sub.get("description")
            if isinstance(desc, str) and desc:
                line += f" - {_first_paragraph(desc)}"
            lines.append(line)
            lines.extend(_field_lines(sub, len(sub_pad) + 2, depth + 1, budget))
    return lines


def _type_of(schema: Mapping[str, Any]) -> str:
    """A field's type as the prompt writes it: ``string``, ``array[object]``, ``"a" | "b"``."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1] or "object"
    if isinstance(schema.get("enum"), list):
        return " | ".join(json.dumps(v, ensure_ascii=False) for v in schema["enum"])
    if "const" in schema:
        return json.dumps(schema["const"], ensure_ascii=False)
    variants = _variants(schema)
    if variants != [schema]:
        return " | ".join(_type_of(v) if isinstance(v, Mapping) else "any" for v in variants)
    t = schema.get("type")
    if t == "array":
        items = schema.get("items")
        return f"array[{_type_of(items) if isinstance(items, Mapping) else 'any'}]"
    if t == "object" or (t is None and "properties" in schema):
        extra = schema.get("additionalProperties")
        if not schema.get("properties") and isinstance(extra, Mapping) and extra:
            return f"object[string -> {_type_of(extra)}]"
        return "object"
    if isinstance(t, list):
        return " | ".join(str(x) for x in t)
    return str(t) if t else "any"


_BOUNDS = (
    ("minimum", ">= {}"),
    ("exclusiveMinimum", "> {}"),
    ("maximum", "<= {}"),
    ("exclusiveMaximum", "< {}"),
    ("minLength", "at least {} characters"),
    ("maxLength", "at most {} characters"),
    ("pattern", "matching {}"),
    ("format", "format {}"),
    ("minItems", "at least {} items"),
    ("maxItems", "at most {} items"),
)


def _notes(schema: Mapping[str, Any]) -> str:
    """A field's bounds and default: ``>= 0, default 1``."""
    notes = []
    for key, text in _BOUNDS:
        value = schema.get(key)
        if value is not None and not isinstance(value, bool | dict | list):
            notes.append(text.format(json.dumps(value) if key == "pattern" else value))
    if "default" in schema:
        notes.append(f"default {_clip(json.dumps(schema['default'], ensure_ascii=False), 60)}")
    return ", ".join(notes)


def _bounds_note(schema: Mapping[str, Any]) -> str:
    """A parameter's bounds and pattern, as `` (>= 0, matching "^[A-Z]+$")``; ``""`` for none.

    The grammar holds what it can of these and validation the rest, but the model should
    know them before it writes the value.
    """
    notes = [
        text.format(json.dumps(value) if key == "pattern" else value)
        for key, text in _BOUNDS
        if (value := schema.get(key)) is not None and not isinstance(value, bool | dict | list)
    ]
    return f" ({', '.join(notes)})" if notes else ""


def _first_paragraph(text: str) -> str:
    return " ".join(text.strip().split("\n\n", 1)[0].split())


def _schema_brief(schema: Mapping[str, Any]) -> str:
    text = json.dumps(schema, separators=(",", ":"))
    return text if len(text) <= 200 else text[:197] + "..."


@dataclass(frozen=True, slots=True)
class TaskReport:
    """What the planner and joiner are told about one task."""

    task: Task
    status: str  # succeeded, failed, skipped, cancelled, running, waiting
    value: Any = None
    message: str | None = None


@dataclass(slots=True)
class PlanContext:
    """Everything a (re)planning call needs to know about the run so far.

    ``instructions`` are added to the planner's system prompt (what the application wants of
    every plan: house rules, which tools to prefer); ``examples`` are more worked examples,
    each a question and its plan as text, shown after the built-in one; ``history`` holds the
    conversation's earlier turns, which the question may refer to.
    """

    question: str
    start_id: int = 1
    max_tasks: int = 32
    plans: list[str] = field(default_factory=list)
    reports: list[TaskReport] = field(default_factory=list)
    interrupts: list[str] = field(default_factory=list)
    feedback: str | None = None
    mode: Literal["plan", "react", "parallel_fc"] = "plan"
    instructions: str = ""
    examples: Sequence[str] = ()
    history: Sequence[Turn] = ()


def _clip(text: str, limit: int = MAX_RESULT_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 15] + f"... [{len(text) - limit + 15} more]"


def render_results(reports: Sequence[TaskReport]) -> str:
    """One line per task: id, call, and its result or what happened to it."""
    lines = []
    for r in reports:
        call = r.task.to_text().split(". ", 1)[1]
        if r.status == "succeeded":
            body = _clip(stringify(r.value))
        else:
            body = r.status.upper() + (f": {r.message}" if r.message else "")
        lines.append(f"${r.task.id} = {call} -> {body}")
    return "\n".join(lines)


def planner_messages(
    tools: Toolset, ctx: PlanContext, *, output: Literal["text", "json"]
) -> list[dict[str, str]]:
    """The chat messages asking for a plan (or, on a replan, for its continuation).

    The first two messages (system, question) are the same for every call of the run; a replan
    adds the plan so far as the assistant's turn and a user turn with the results, the
    interrupts and where to continue (see the module's docstring).
    """
    rules = (TEXT_RULES if output == "text" else JSON_RULES).format(max_tasks=ctx.max_tasks)
    example = TEXT_EXAMPLE if output == "text" else JSON_EXAMPLE
    system = (
        "You are the planner of a parallel tool-calling system. Given a question, write a plan of "
        "tool calls that answers it with as much parallelism as possible.\n\n"
        f"Tools:\n{tool_catalog(tools)}\n\n{rules}{MODE_RULES[ctx.mode]}\n\n{example}"
    )
    for i, extra in enumerate(e.strip() for e in ctx.examples if e.strip()):
        system += f"\n\nExample {i + 2}:\n{extra}"
    if ctx.instructions.strip():
        system += f"\n\nInstructions:\n{ctx.instructions.strip()}"
    question = "\n\n".join([*_conversation(ctx.history), f"Question: {ctx.question}"])
    if not (ctx.plans or ctx.reports) and ctx.start_id != 1:
        question += f"\n\nNumber the tasks from {ctx.start_id}."
    messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
    if not (ctx.plans or ctx.reports or ctx.interrupts or ctx.feedback):
        return messages
    tail = _run_so_far(ctx.plans, ctx.reports, messages)
    if ctx.interrupts:
        tail.append("Interrupted: " + "; ".join(ctx.interrupts))
    if ctx.feedback:
        tail.append(f"Feedback: {ctx.feedback}")
    tail.append(
        f"Continue the plan from task {ctx.start_id}. Earlier results stay available as $k; "
        "do not repeat tasks that succeeded."
    )
    messages.append({"role": "user", "content": "\n\n".join(tail)})
    return messages


def _run_so_far(
    plans: Sequence[str], reports: Sequence[TaskReport], messages: list[dict[str, str]]
) -> list[str]:
    """Append the plan so far to ``messages`` as the assistant's turn; return the start of the
    user turn after it (the results)."""
    plan = "\n".join(p.rstrip() for p in plans if p.strip())
    messages.append({"role": "assistant", "content": plan or "(no tasks yet)"})
    return ["Results so far:\n" + render_results(reports)] if reports else []


#: What the joiner is asked to do (after its system text, or at the end of the planner's prompt).
JOINER_TASK = "read the question, the plan and the results of its tasks, then decide."


def _conversation(history: Sequence[Turn]) -> list[str]:
    """The prompt block of a conversation's earlier turns (none without a history)."""
    text = history_text(history)
    return [f"Conversation so far (the question may refer to it):\n{text}"] if text else []


def _joiner_extras(instructions: str, output_schema: Mapping[str, Any] | None) -> str:
    """What the joiner's system prompt adds for a typed answer and the application's rules."""
    out = ""
    if output_schema is not None:
        schema = json.dumps(output_schema, ensure_ascii=False, separators=(",", ":"))
        out += (
            '\nThe "answer" is not text but a JSON value that fits this schema (write it as JSON, '
            f"not as a string holding JSON):\n{schema}"
        )
    if instructions.strip():
        out += f"\n\nInstructions:\n{instructions.strip()}"
    return out


def joiner_messages(
    question: str,
    plan: Plan | str,
    reports: Sequence[TaskReport],
    *,
    force_finish: bool = False,
    proposed: str | None = None,
    prefix: Sequence[Mapping[str, str]] | None = None,
    instructions: str = "",
    history: Sequence[Turn] = (),
    output_schema: Mapping[str, Any] | None = None,
) -> list[dict[str, str]]:
    """The chat messages asking the joiner to finish with an answer or to ask for a replan.

    ``proposed`` is the plan's answer template, rendered with the results. ``prefix`` is the
    planner's first two messages (its system text and the question, see
    :attr:`PlanRound.messages <tomasulo.planner.PlanRound.messages>`): the joiner's prompt
    then extends the planner's, with the plan as the assistant's turn and the results and
    the joiner's instructions after it, so a server with a prefix cache prefills only those.
    Without it the joiner has a short system text of its own. ``instructions`` are added to
    the joiner's instructions, ``history`` (earlier turns of the conversation) comes before
    the question, and ``output_schema`` is the schema a typed answer must fit (``output_type=``).
    """
    plan_text = plan if isinstance(plan, str) else plan.to_text()
    how = (
        'Answer with JSON: {"thought": "...", "action": "finish", "answer": "..."}'
        if force_finish
        else 'Answer with JSON: {"thought": "...", "action": "finish", "answer": "..."} when the '
        'results answer the question, or {"thought": "...", "action": "replan", "feedback": "..."} '
        "saying what is missing."
    )
    proposal = (
        None
        if proposed is None
        else f"The plan's proposed answer (its join template, filled in):\n{_clip(proposed)}"
    )
    extras = _joiner_extras(instructions, output_schema)
    if prefix is None:
        system = f"You are the joiner of a parallel tool-calling system. {JOINER_TASK.capitalize()}\n{how}"
        system += extras
        user = "".join(f"{block}\n\n" for block in _conversation(history))
        user += f"Question: {question}\n\nPlan:\n{plan_text.rstrip()}\n\nResults:\n{render_results(reports)}"
        if proposal is not None:
            user += f"\n\n{proposal}"
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]
    messages = [dict(m) for m in prefix[:2]]
    tail = _run_so_far([plan_text], reports, messages) or ["Results so far: none"]
    if proposal is not None:
        tail.append(proposal)
    tail.append(f"You are now the joiner: {JOINER_TASK}\n{how}{extras}")
    messages.append({"role": "user", "content": "\n\n".join(tail)})
    return messages


def tool_specs(tools: Toolset) -> list[dict[str, Any]]:
    """The toolset as OpenAI function definitions, for native tool calling (``tools=``).

    >>> from tomasulo.tools import Toolset, tool
    >>> @tool
    ... def search(query: str) -> str:
    ...     "Look something up."
    >>> spec = tool_specs(Toolset([search]))[0]
    >>> spec["type"], spec["function"]["name"], spec["function"]["parameters"]["required"]
    ('function', 'search', ['query'])
    """
    out = []
    for t in tools:
        function: dict[str, Any] = {"name": t.name, "parameters": dict(t.input_schema)}
        if t.description:
            function["description"] = _first_paragraph(t.description)
        out.append({"type": "function", "function": function})
    return out


TURN_RULES = {
    "react": "Call one tool per turn and wait for its result before the next call.",
    "parallel_fc": (
        "In each turn, call every tool that can run now (the calls of one turn run at once and "
        "cannot use each other's results); use earlier turns' results in later turns."
    ),
}


def turn_messages(
    question: str, mode: Literal["react", "parallel_fc"], *, instructions: str = ""
) -> list[dict[str, str]]:
    """The first messages of a native tool-calling conversation (the ``react`` and
    ``parallel_fc`` baselines): a system text and the question. The run appends each turn's
    calls and their results; the model answers in plain text, with no call, when it can."""
    system = (
        "You answer questions with the tools you are given. "
        f"{TURN_RULES[mode]} When the results answer the question, reply with the answer alone, "
        "in plain text, and call no tool."
    )
    if instructions.strip():
        system += f"\n\nInstructions:\n{instructions.strip()}"
    return [{"role": "system", "content": system}, {"role": "user", "content": f"Question: {question}"}]
