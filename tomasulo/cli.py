"""The ``tomasulo`` command.

Exit codes: 0 done, 1 the run failed, 2 bad input (a bad file, plan, option or input value).

    tomasulo validate FILE             check a workflow file
    tomasulo plan FILE|-               parse and check a plan; tasks, dependencies, critical path
    tomasulo graph FILE --format F     the task graph as mermaid, dot or png
    tomasulo run FILE [-i k=v]         run a workflow (or --inputs in.jsonl --out out.jsonl -j 8)
    tomasulo ask "question"            plan with an LLM and run the tools
    tomasulo simulate-llm              serve SimulatedLLM, an OpenAI-compatible test server
    tomasulo serve [--config F]        the REST service (tomasulo db upgrade, tomasulo keys ...)
    tomasulo remote ask|run|events|cancel|interrupt   a service's runs, over HTTP (--url)

What people read goes to standard output: on a terminal a live table of tasks, elsewhere one
line per change, then the report and the result (``--json`` instead prints one JSON document
there, and nothing else). Logs go to standard error (``--log-level``, env ``TOMASULO_LOG_LEVEL``),
and so do ``error:`` lines, so the two never mix. ``--gantt out.png|out.html`` draws the timeline.

A user's mistake never ends in a traceback: bad input (files, options, output paths that cannot
be written, plans, encodings) exits 2 with one ``error:`` line before anything runs, and a run that
fails for any reason exits 1 with one line naming why.
"""

from __future__ import annotations

import collections.abc
import functools
import json
import math
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import anyio
import typer
import typer.core
from rich.console import Console
from rich.table import Table

from .exceptions import PlanError, TomasuloError, UserError
from .grammar import Plan, parse_plan
from .tools import Toolset

__all__ = ["app", "main"]

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class _FlagsWithoutType:
    """Help that shows a flag as a flag: ``--json``, not ``--json <bool>``."""

    def get_params(self, ctx: Any) -> list[Any]:
        params: list[Any] = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class _Command(_FlagsWithoutType, typer.core.TyperCommand):
    pass


class _Group(_FlagsWithoutType, typer.core.TyperGroup):
    pass


app = typer.Typer(
    name="tomasulo",
    cls=_Group,
    help="Parallel function calling: plans of tool calls dispatched as soon as inputs exist.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
command = functools.partial(app.command, cls=_Command)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class LogLevel(StrEnum):
    """Levels for ``--log-level``."""

    debug = "DEBUG"
    info = "INFO"
    warning = "WARNING"
    error = "ERROR"


def _show_version(value: bool) -> None:
    if value:
        from ._version import __version__

        print(f"tomasulo {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", help="Show the version and exit.", callback=_show_version, is_eager=True),
    ] = False,
    log_level: Annotated[
        LogLevel,
        typer.Option(
            "--log-level", envvar="TOMASULO_LOG_LEVEL", case_sensitive=False, help="Logs to standard error."
        ),
    ] = LogLevel.warning,
) -> None:
    """Parallel function calling: plans of tool calls dispatched as soon as inputs exist."""
    from ._logging import configure_logging

    configure_logging(log_level.value)


def _json_out(data: Any) -> None:
    from .views import dumps_json

    print(dumps_json(data))


def _fail(message: str, code: int = EXIT_BAD_INPUT, *, as_json: bool = False) -> NoReturn:
    if as_json:
        _json_out({"ok": False, "error": message})
    else:
        err.print(f"error: {message}", markup=False)
    raise typer.Exit(code)


def _read_text(source: str, as_json: bool = False) -> str:
    from .workflows import decode_utf8

    name = "<stdin>" if source == "-" else source
    try:
        data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as exc:
        _fail(f"cannot read {source}: {exc.strerror}", as_json=as_json)
    try:
        return decode_utf8(data, path=name, what="the plan")
    except UserError as exc:
        _fail(str(exc), as_json=as_json)


def _check_output(path: Path | None, flag: str, as_json: bool = False) -> None:
    """Refuse, before anything runs, an output path that cannot be written."""
    if path is None:
        return
    shown = f"{flag} {path}"
    if path.is_dir():
        _fail(f"{shown} is a folder; give a file name", as_json=as_json)
    if path.exists():
        if not os.access(path, os.W_OK):
            _fail(f"{shown}: the file exists and cannot be written (permission denied)", as_json=as_json)
        return
    folder = path.absolute().parent
    while not folder.exists() and not folder.is_symlink() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        _fail(f"{shown}: {folder} is not a folder, so the file cannot be made there", as_json=as_json)
    if not os.access(folder, os.W_OK | os.X_OK):
        _fail(f"{shown}: cannot write into {folder} (permission denied)", as_json=as_json)


def _until_done(fn: collections.abc.Callable[..., Any], *args: Any, as_json: bool = False) -> int:
    """Run ``fn`` in an event loop: an error that escapes the run is one line and an exit code."""
    try:
        code: int = anyio.run(fn, *args)
    except (PlanError, UserError) as exc:
        _fail(str(exc), as_json=as_json)
    except RecursionError:
        _fail("the plan nests its values too deeply to read; flatten it", as_json=as_json)
    except TomasuloError as exc:
        _fail(f"the run failed: {type(exc).__name__}: {exc}", EXIT_FAILED, as_json=as_json)
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        _fail(f"cannot write{where}: {exc.strerror or exc}", EXIT_FAILED, as_json=as_json)
    return code


def _is_workflow(source: str) -> bool:
    return source.endswith((".yaml", ".yml"))


def _toolset(specs: list[str], builtins: bool) -> Toolset | None:
    from .tools import ToolLoadError, load_tools
    from .tools.builtins import builtin_toolset

    if not specs and not builtins:
        return None
    tools = list(builtin_toolset()) if builtins else []
    for spec in specs:
        try:
            tools.extend(load_tools(spec, Path.cwd()))
        except ToolLoadError as exc:
            _fail(f"--tools {spec}: {exc}")
    try:
        return Toolset(tools)
    except UserError as exc:
        _fail(str(exc))


def _plan_summary(plan: Plan) -> dict[str, Any]:
    path, length = plan.critical_path()
    return {
        "tasks": [
            {"id": t.id, "tool": t.tool, "deps": sorted(t.deps), "text": t.to_text()} for t in plan.tasks
        ],
        "joined": plan.joined,
        "waves": plan.generations(),
        "critical_path": path,
        "critical_path_length": length,
    }


def _plans_of(source: str, tools: Toolset | None, compat: bool, as_json: bool) -> dict[str, Plan]:
    if _is_workflow(source):
        from .workflows import load_workflow

        try:
            workflow = load_workflow(source)
        except UserError as exc:
            _fail(str(exc), as_json=as_json)
        return dict(workflow.plans)
    text = _read_text(source, as_json)
    name = "<stdin>" if source == "-" else source
    try:
        return {"plan": parse_plan(text, tools, compat=compat)}
    except PlanError as exc:
        _fail(f"{name}: {exc}", as_json=as_json)
    except RecursionError:
        _fail(f"{name}: the plan nests its values too deeply to read; flatten it", as_json=as_json)


JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
ToolsOpt = Annotated[
    list[str],
    typer.Option("--tools", "-t", help="module:toolset (or module:function) to check against."),
]
BuiltinsOpt = Annotated[bool, typer.Option("--builtins", help="Check against the built-in tools.")]
CompatOpt = Annotated[bool, typer.Option("--compat", help="Read LLMCompiler-style plans.")]


@command()
def validate(
    file: Annotated[str, typer.Argument(help="A workflow file (YAML).")],
    as_json: JsonOpt = False,
) -> None:
    """Check a workflow file: YAML, keys, types, tools, inputs, outputs and every plan."""
    from .workflows import load_workflow

    try:
        workflow = load_workflow(file)
    except UserError as exc:
        _fail(str(exc), as_json=as_json)
    spec = workflow.spec
    steps: list[dict[str, Any]] = [
        {
            "id": sid,
            "kind": "plan" if sid in workflow.plans else "query",
            "tasks": len(workflow.plans[sid]) if sid in workflow.plans else None,
        }
        for sid in workflow.step_ids
    ]
    summary: dict[str, Any] = {
        "ok": True,
        "name": spec.name,
        "tools": list(workflow.toolset.names),
        "inputs": {k: v.type for k, v in spec.inputs.items()},
        "steps": steps,
        "outputs": list(spec.outputs),
    }
    if as_json:
        _json_out(summary)
        return
    out.print(
        f"[green]ok[/green] {file}: {len(spec.steps)} step(s), tools: "
        f"{', '.join(workflow.toolset.names) or 'none'}"
    )
    for step in steps:
        detail = f"{step['tasks']} tasks" if step["kind"] == "plan" else "query (needs an LLM)"
        out.print(f"  {step['id']}: {detail}", markup=False)


@command()
def plan(
    file: Annotated[str, typer.Argument(help="A plan file, a workflow file, or - for stdin.")],
    tools: ToolsOpt = [],  # noqa: B006 - typer reads the default
    builtins: BuiltinsOpt = False,
    compat: CompatOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Parse and check a plan: print its tasks, dependencies, waves and critical path."""
    plans = _plans_of(file, _toolset(tools, builtins), compat, as_json)
    summaries = {name: _plan_summary(p) for name, p in plans.items()}
    if as_json:
        _json_out({"ok": True, "plans": summaries})
        return
    for name, summary in summaries.items():
        table = Table(title=name if len(plans) > 1 else None, box=None)
        for column in ("id", "tool", "deps", "task"):
            table.add_column(column)
        for task in summary["tasks"]:
            deps = ", ".join(map(str, task["deps"])) or "-"
            table.add_row(str(task["id"]), task["tool"], deps, task["text"])
        out.print(table)
        path = " -> ".join(map(str, summary["critical_path"])) or "-"
        out.print(f"waves: {summary['waves']}", markup=False)
        out.print(f"critical path: {path} ({summary['critical_path_length']:g} tasks)")
        if not summary["joined"]:
            out.print("[yellow]note:[/yellow] the plan does not end with join()")


class GraphFormat(StrEnum):
    """Formats for ``tomasulo graph``."""

    mermaid = "mermaid"
    dot = "dot"
    png = "png"


def _label(text: str) -> str:
    return text.replace('"', "'")


def _mermaid(plans: dict[str, Plan]) -> str:
    lines = ["flowchart LR"]
    for name, p in plans.items():
        prefix = f"{name}_" if len(plans) > 1 else "t"
        if len(plans) > 1:
            lines.append(f"  subgraph {name}")
        for t in p.tasks:
            lines.append(f'    {prefix}{t.id}["{t.id}. {_label(t.tool)}"]')
        for t in p.tasks:
            for d in sorted(t.deps):
                lines.append(f"    {prefix}{d} --> {prefix}{t.id}")
        if len(plans) > 1:
            lines.append("  end")
    return "\n".join(lines) + "\n"


def _dot(plans: dict[str, Plan]) -> str:
    lines = ["digraph plan {", "  rankdir=LR;", "  node [shape=box];"]
    for name, p in plans.items():
        prefix = f"{name}_" if len(plans) > 1 else "t"
        for t in p.tasks:
            lines.append(f'  {prefix}{t.id} [label="{t.id}. {_label(t.tool)}"];')
        for t in p.tasks:
            for d in sorted(t.deps):
                lines.append(f"  {prefix}{d} -> {prefix}{t.id};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _png(plans: dict[str, Plan], target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import networkx as nx

    fig, axes = plt.subplots(len(plans), 1, figsize=(8, 3 * len(plans)), squeeze=False)
    for ax, (name, p) in zip(axes[:, 0], plans.items(), strict=True):
        g = p.graph()
        for layer, ids in enumerate(p.generations()):
            for node in ids:
                g.nodes[node]["layer"] = layer
        pos = nx.multipartite_layout(g, subset_key="layer") if len(g) else {}
        labels = {n: f"{n}. {g.nodes[n]['task'].tool}" for n in g}
        nx.draw_networkx(
            g, pos, ax=ax, labels=labels, node_color="#cfe2ff", node_size=1400, font_size=8, arrows=True
        )
        ax.set_title(name)
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(target, dpi=120)
    plt.close(fig)


@command()
def graph(
    file: Annotated[str, typer.Argument(help="A plan file, a workflow file, or - for stdin.")],
    fmt: Annotated[GraphFormat, typer.Option("--format", "-f")] = GraphFormat.mermaid,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here.")] = None,
    tools: ToolsOpt = [],  # noqa: B006
    builtins: BuiltinsOpt = False,
    compat: CompatOpt = False,
) -> None:
    """Draw the task graph of a plan (or of every plan step of a workflow)."""
    if fmt is GraphFormat.png and output is None:
        _fail("--format png needs --output FILE.png")
    _check_output(output, "--output")
    plans = _plans_of(file, _toolset(tools, builtins), compat, False)
    if not plans:
        _fail(f"{file} has no plan steps to draw")
    if fmt is GraphFormat.png:
        assert output is not None
        _png(plans, output)
        out.print(f"wrote {output}", markup=False, highlight=False)
        return
    text = _mermaid(plans) if fmt is GraphFormat.mermaid else _dot(plans)
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        _fail(f"cannot write {output}: {exc.strerror}")


GanttOpt = Annotated[
    Path | None,
    typer.Option("--gantt", help="Draw the run's timeline into this .png, .svg, .pdf or .html file."),
]
BaseUrlOpt = Annotated[
    str | None, typer.Option("--base-url", help="OpenAI-compatible server (env TOMASULO_BASE_URL).")
]
ModelOpt = Annotated[str | None, typer.Option("--model", help="Model name (env TOMASULO_MODEL).")]
DialectOpt = Annotated[
    str | None,
    typer.Option("--dialect", help="vllm, llamacpp, sglang, openai, ollama or plain (env TOMASULO_DIALECT)."),
]
ApiKeyOpt = Annotated[
    str | None, typer.Option("--api-key", help="API key (env TOMASULO_API_KEY).", show_default=False)
]
ApiKeyEnvOpt = Annotated[
    str | None, typer.Option("--api-key-env", help="Read the API key from this variable.")
]


def _check_gantt(path: Path | None, as_json: bool) -> None:
    if path is not None and path.suffix.lower() not in (".png", ".svg", ".pdf", ".html", ".htm"):
        _fail(f"--gantt {path}: use a .png, .svg, .pdf or .html file", as_json=as_json)
    _check_output(path, "--gantt", as_json)


def _draw(bars: Any, path: Path | None, title: str, as_json: bool) -> str | None:
    from .views import draw_gantt

    if path is None:
        return None
    try:
        written = draw_gantt(bars, path, title=title)
    except UserError as exc:
        err.print(f"warning: no Gantt chart: {exc}", markup=False)
        return None
    except OSError as exc:
        err.print(f"warning: no Gantt chart: cannot write {path}: {exc.strerror or exc}", markup=False)
        return None
    if not as_json:
        out.print(f"Gantt chart: {written}", markup=False, highlight=False)
    return str(written)


def _print_value(value: Any) -> None:
    from .views import dumps_json, jsonable

    text = jsonable(value) if isinstance(value, str) else dumps_json(value, indent=2)
    out.print(text, markup=False, highlight=False, soft_wrap=True)


def _model_flags(
    base_url: str | None,
    model: str | None,
    dialect: str | None,
    api_key: str | None,
    api_key_env: str | None = None,
    as_json: bool = False,
) -> dict[str, str | None]:
    """The model flags every command that talks to an LLM takes; ``--api-key-env VAR`` reads
    the key from ``VAR`` (``--api-key`` wins over it, and both over ``TOMASULO_API_KEY``)."""
    if api_key is None and api_key_env:
        api_key = os.environ.get(api_key_env)
        if api_key is None:
            _fail(f"--api-key-env {api_key_env}: no such environment variable is set", as_json=as_json)
    return {"base_url": base_url, "model": model, "dialect": dialect, "api_key": api_key}


def _resolve(config: Any, flags: dict[str, str | None]) -> Any:
    from .planner import resolve_model

    return resolve_model(
        config,
        base_url=flags["base_url"],
        model=flags["model"],
        dialect=flags["dialect"],
        api_key=flags["api_key"],
    )


@command()
def run(
    file: Annotated[str, typer.Argument(help="A workflow file (YAML).")],
    inputs: Annotated[list[str], typer.Option("--input", "-i", help="key=value")] = [],  # noqa: B006
    batch: Annotated[Path | None, typer.Option("--inputs", help="JSONL of inputs (batch mode)")] = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="JSONL of results (batch mode)")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Batch lines run at once.")] = 8,
    as_json: JsonOpt = False,
    gantt: GanttOpt = None,
    base_url: BaseUrlOpt = None,
    model: ModelOpt = None,
    dialect: DialectOpt = None,
    api_key: ApiKeyOpt = None,
    api_key_env: ApiKeyEnvOpt = None,
) -> None:
    """Run a workflow: once with -i key=value inputs, or once per line of --inputs into --out."""
    from .workflows import check_batch_paths, load_workflow, read_batch_inputs

    _check_gantt(gantt, as_json)
    _check_output(out_file, "--out", as_json)
    flags = _model_flags(base_url, model, dialect, api_key, api_key_env, as_json)
    try:
        workflow = load_workflow(file)
        if any(step.query is not None for step in workflow.spec.steps):
            _resolve(workflow.spec.model, flags)  # a missing model is bad input, found now
        if batch is not None:
            if out_file is None:
                _fail("--inputs needs --out FILE.jsonl", as_json=as_json)
            if inputs:
                _fail("-i and --inputs do not mix: put every input in the JSONL lines", as_json=as_json)
            check_batch_paths(batch, out_file)
            read_batch_inputs(workflow, batch)  # an unreadable file or repeated ids: nothing runs
        else:
            if out_file is not None:
                _fail("--out goes with --inputs FILE.jsonl (batch mode)", as_json=as_json)
            given: dict[str, Any] = {}
            for item in inputs:
                key, sep, value = item.partition("=")
                if not sep:
                    _fail(f"-i takes key=value, got {item!r}", as_json=as_json)
                given[key] = workflow.coerce(key, value)
            bound = workflow.bind_inputs(given)
    except UserError as exc:
        _fail(str(exc), as_json=as_json)
    title = workflow.spec.name or Path(file).stem
    if batch is not None:
        assert out_file is not None
        code = _until_done(_run_batch, workflow, batch, out_file, jobs, flags, as_json, as_json=as_json)
    else:
        code = _until_done(_run_once, workflow, bound, flags, as_json, gantt, title, as_json=as_json)
    raise typer.Exit(code)


async def _run_once(
    workflow: Any,
    bound: dict[str, Any],
    flags: dict[str, str | None],
    as_json: bool,
    gantt: Path | None,
    title: str,
) -> int:
    from .views import LiveView, report_lines, task_json
    from .workflows import OrchestratorRunner, run_workflow

    view = LiveView(out, live=False if as_json else None, title=title)
    runner = OrchestratorRunner(on_event=None if as_json else view.on_event, model=flags)
    with view if not as_json else _nothing():
        result = await run_workflow(workflow, bound, runner)
    drawn = _draw(runner.gantt_bars(), gantt, title, as_json)
    if as_json:
        data = result.to_json()
        data["steps"] = result.steps
        data["tasks"] = [task_json(t, r.step, r.offset) for r in runner.runs for t in r.result.tasks]
        if drawn:
            data["gantt"] = drawn
        _json_out(data)
        return EXIT_OK if result.ok else EXIT_FAILED
    for line in report_lines(runner.runs):
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    if not result.ok:
        err.print(f"error: {result.error}", markup=False, soft_wrap=True)
        return EXIT_FAILED
    _print_value(result.outputs if result.outputs else result.steps)
    return EXIT_OK


async def _run_batch(
    workflow: Any, batch: Path, out_file: Path, jobs: int, flags: dict[str, str | None], as_json: bool
) -> int:
    from .views import BatchView
    from .workflows import OrchestratorRunner, run_batch

    view = BatchView(0, out, live=False if as_json else None)
    runner = OrchestratorRunner(model=flags, keep_runs=False)

    def started(todo: int, skipped: int) -> None:
        view.total, view.skipped = todo, skipped

    with view if not as_json else _nothing():
        report = await run_batch(
            workflow,
            batch,
            out_file,
            runner,
            concurrency=jobs,
            on_progress=None if as_json else view.update,
            on_start=started,
        )
    summary = {"ok": report.ok, "ran": report.ran, "skipped": report.skipped, "failed": report.failed}
    if as_json:
        _json_out({**summary, "out": str(out_file)})
    else:
        out.print(
            f"batch: {report.ran} ran, {report.skipped} already done, {report.failed} failed; "
            f"results in {out_file}",
            markup=False,
            highlight=False,
        )
    return EXIT_OK if report.ok else EXIT_FAILED


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@command()
def ask(
    question: Annotated[str, typer.Argument(help="The question for the planner.")],
    tools: ToolsOpt = [],  # noqa: B006
    builtins: Annotated[
        bool, typer.Option("--builtins/--no-builtins", help="Offer math, echo, sleep.")
    ] = True,
    db: Annotated[
        Path | None, typer.Option("--db", help="Offer `sql` on this SQLite (or .sql) file.")
    ] = None,
    root: Annotated[
        Path | None, typer.Option("--root", help="Offer read_file and grep under this folder.")
    ] = None,
    base_url: BaseUrlOpt = None,
    model: ModelOpt = None,
    dialect: DialectOpt = None,
    api_key: ApiKeyOpt = None,
    api_key_env: ApiKeyEnvOpt = None,
    max_replans: Annotated[int, typer.Option("--max-replans", min=0)] = 2,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Seconds for the whole run.")] = None,
    instructions: Annotated[
        str | None, typer.Option("--instructions", help="Extra rules for the planner, added to its prompt.")
    ] = None,
    output_schema: Annotated[
        Path | None,
        typer.Option(
            "--output-schema",
            help="A JSON schema file: the answer is a JSON value of that shape (printed as JSON).",
        ),
    ] = None,
    as_json: JsonOpt = False,
    gantt: GanttOpt = None,
) -> None:
    """Ask a question: the LLM plans tool calls, tomasulo runs them as soon as they can run."""
    from .workflows import ModelConfig

    _check_gantt(gantt, as_json)
    if timeout is not None and timeout <= 0:
        _fail("--timeout must be a positive number of seconds", as_json=as_json)
    try:
        flags = _model_flags(base_url, model, dialect, api_key, api_key_env, as_json)
        settings = _resolve(ModelConfig(), flags)
    except UserError as exc:
        _fail(str(exc), as_json=as_json)
    options: dict[str, Any] = {"instructions": instructions}
    if output_schema is not None:
        options["output_type"] = _read_schema(output_schema, as_json)
    toolset = _ask_tools(tools, builtins, db, root, as_json)
    code = _until_done(
        _ask, question, toolset, settings, max_replans, timeout, as_json, gantt, options, as_json=as_json
    )
    raise typer.Exit(code)


def _read_schema(path: Path, as_json: bool) -> Any:
    """``--output-schema``: a JSON schema read from ``path`` and checked, or exit 2 saying why."""
    from .planner import OutputSpec
    from .workflows import decode_utf8

    try:
        text = decode_utf8(path.read_bytes(), path=str(path), what="the output schema")
        schema = json.loads(text)
        if not isinstance(schema, dict):
            _fail(f"--output-schema {path}: a JSON schema is a JSON object", as_json=as_json)
        OutputSpec(schema)  # a schema that is not one is refused here, before any LLM call
    except OSError as exc:
        _fail(f"--output-schema: cannot read {path}: {exc.strerror}", as_json=as_json)
    except ValueError as exc:  # not JSON, or not a JSON schema (ConfigError is a ValueError)
        _fail(f"--output-schema {path}: {str(exc).splitlines()[0]}", as_json=as_json)
    except UserError as exc:
        _fail(f"--output-schema {path}: {exc}", as_json=as_json)
    return schema


def _ask_tools(
    specs: list[str], builtins: bool, db: Path | None, root: Path | None, as_json: bool
) -> Toolset:
    from .tools import ToolLoadError, load_tools
    from .tools.builtins import builtin_toolset

    try:
        tools = list(builtin_toolset(db=db, root=root)) if builtins or db or root else []
        if not builtins and (db or root):
            tools = [t for t in tools if t.name not in ("math", "echo", "sleep")]
        for spec in specs:
            try:
                tools.extend(load_tools(spec, Path.cwd()))
            except ToolLoadError as exc:
                _fail(f"--tools {spec}: {exc}", as_json=as_json)
        if not tools:
            _fail("no tools: give --tools module:toolset, --db, --root, or keep --builtins", as_json=as_json)
        return Toolset(tools)
    except UserError as exc:
        _fail(str(exc), as_json=as_json)


async def _ask(
    question: str,
    toolset: Toolset,
    settings: Any,
    max_replans: int,
    seconds: float | None,
    as_json: bool,
    gantt: Path | None,
    options: dict[str, Any],
) -> int:
    from .runtime import Budget, Orchestrator
    from .views import LiveView, bars_from, report_lines, task_json

    view = LiveView(out, live=False if as_json else None, title=question[:80])
    async with settings.llm() as llm:
        orch = Orchestrator(
            toolset,
            llm,
            budget=Budget(max_replans=max_replans, max_seconds=seconds),
            on_event=None if as_json else view.handle,
        )
        with view if not as_json else _nothing():
            result = await orch.run(question, **options)
    drawn = _draw(bars_from(result), gantt, question[:80], as_json) if result.tasks else None
    if as_json:
        data: dict[str, Any] = {
            "ok": result.ok,
            "status": result.status,
            "reason": result.reason,
            "answer": result.answer,
            "output": result.output,
            "tasks": [task_json(t) for t in result.tasks],
            "plans": result.plans,
            "replans": result.replans,
            "usage": {
                "prompt_tokens": result.usage.prompt_tokens,
                "completion_tokens": result.usage.completion_tokens,
            },
            "makespan": round(result.makespan, 6),
        }
        if drawn:
            data["gantt"] = drawn
        _json_out(data)
        return EXIT_OK if result.ok else EXIT_FAILED
    for line in report_lines(result):
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    if not result.ok:
        err.print(f"error: the run {result.status}: {result.reason}", markup=False, soft_wrap=True)
        if result.answer:
            out.print(f"best answer at hand: {result.answer}", markup=False, soft_wrap=True)
        return EXIT_FAILED
    _print_value(result.output if "output_type" in options else result.answer or "")
    return EXIT_OK


_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _read_script(path: Path) -> list[str]:
    from .workflows import decode_utf8

    try:
        text = decode_utf8(path.read_bytes(), path=str(path), what="the script")
    except OSError as exc:
        _fail(f"cannot read the script {path}: {exc.strerror}")
    except UserError as exc:
        _fail(str(exc))
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            _fail(f"{path}: not JSON: {exc}")
        if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
            _fail(f"{path}: a JSON script is a list of reply strings")
        return list(data)
    replies: list[str] = []
    current: list[str] = []
    for line in text.splitlines(keepends=True):
        if line.rstrip("\r\n") == "---":
            replies.append("".join(current).rstrip())
            current = []
        else:
            current.append(line)
    if "".join(current).strip():
        replies.append("".join(current).rstrip())
    return replies


@command("simulate-llm")
def simulate_llm(
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="0 picks a free port.")] = 8000,
    script: Annotated[
        Path | None,
        typer.Option(
            "--script",
            help="Replies in order: a text file with replies between lines of ---, or a JSON list.",
        ),
    ] = None,
    ttft: Annotated[float, typer.Option("--ttft", min=0, help="Seconds to the first token.")] = 0.0,
    tokens_per_second: Annotated[
        float | None,
        typer.Option("--tokens-per-second", min=0.001, help="Token rate (default: all at once)."),
    ] = None,
    model: Annotated[str, typer.Option("--model")] = "simulated-llm",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    allow_remote: Annotated[
        bool, typer.Option("--allow-remote", help="Listen on a non-loopback address.")
    ] = False,
) -> None:
    """Serve SimulatedLLM: an OpenAI-compatible test server with scripted replies.

    After the scripted replies (or with none), each request gets a random text that its grammar
    accepts. Point `tomasulo ask --base-url` at the URL it prints.
    """
    if host not in _LOOPBACK and not allow_remote:
        _fail(
            f"refusing to listen on {host}: SimulatedLLM is a test server; use 127.0.0.1, "
            "or pass --allow-remote if you really mean to expose it"
        )
    replies = _read_script(script) if script is not None else []
    try:
        anyio.run(_simulate, host, port, replies, ttft, tokens_per_second, model, seed)
    except KeyboardInterrupt:
        err.print("stopped")
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


async def _simulate(
    host: str, port: int, replies: list[str], ttft: float, rate: float | None, model: str, seed: int
) -> None:
    from .testing import Latency, Reply, SimulatedLLM

    sim = SimulatedLLM(
        replies,
        default=Reply.sampled(),
        latency=Latency(ttft=ttft, tokens_per_second=rate),
        model=model,
        seed=seed,
    )
    async with sim.serve(host, port) as base_url:
        err.print(f"SimulatedLLM serving on {base_url}", markup=False, highlight=False)
        err.print(
            f"  {len(replies)} scripted replies, then random text its grammar accepts; Ctrl-C to stop",
            markup=False,
            highlight=False,
        )
        err.file.flush()
        await anyio.sleep_forever()


def main() -> None:
    """Entry point of the ``tomasulo`` command."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:  # text that cannot be encoded is escaped, never a crash
            reconfigure(errors="backslashreplace")
    try:
        app()
    except TomasuloError as exc:  # anything not caught by a command is still a clear message
        err.print(f"error: {exc}", markup=False)
        sys.exit(EXIT_BAD_INPUT if isinstance(exc, UserError | PlanError) else EXIT_FAILED)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


# -- tomasulo mcp: tomasulo as an MCP server ----------------------------------------------------


@command("mcp")
def mcp_server(
    tools: ToolsOpt = [],  # noqa: B006
    builtins: Annotated[
        bool, typer.Option("--builtins/--no-builtins", help="Offer math, echo, sleep.")
    ] = True,
    db: Annotated[
        Path | None, typer.Option("--db", help="Offer `sql` on this SQLite (or .sql) file.")
    ] = None,
    root: Annotated[
        Path | None, typer.Option("--root", help="Offer read_file and grep under this folder.")
    ] = None,
    base_url: BaseUrlOpt = None,
    model: ModelOpt = None,
    dialect: DialectOpt = None,
    api_key: ApiKeyOpt = None,
    api_key_env: ApiKeyEnvOpt = None,
    max_replans: Annotated[int, typer.Option("--max-replans", min=0)] = 2,
    http: Annotated[bool, typer.Option("--http", help="Streamable HTTP instead of stdio.")] = False,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="0 picks a free port.")] = 8765,
    max_tasks: Annotated[
        int, typer.Option("--max-tasks", min=1, help="The most tasks one plan may have.")
    ] = 64,
    max_plan_chars: Annotated[
        int, typer.Option("--max-plan-chars", min=1, help="The longest plan text read.")
    ] = 100_000,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds one run_plan or ask may take.")
    ] = 300.0,
) -> None:
    """Serve tomasulo over MCP: tools ask, run_plan and validate_plan (stdio, or --http on 127.0.0.1).

    Tools and model options as for `tomasulo ask`; without a model only `ask` fails (with a hint).
    """
    from .service import build_mcp_server, serve_mcp_http
    from .workflows import ModelConfig

    if not (math.isfinite(timeout) and timeout > 0):
        _fail("--timeout must be a positive number of seconds")

    toolset = _ask_tools(tools, builtins, db, root, False)
    settings, problem = None, None
    flags = _model_flags(base_url, model, dialect, api_key, api_key_env)
    try:
        settings = _resolve(ModelConfig(), flags)
    except UserError as exc:
        if any(flags.values()):
            _fail(str(exc))  # a model was asked for but is wrong: say so now
        problem = str(exc)
    server = build_mcp_server(
        toolset,
        model=settings,
        model_problem=problem,
        max_replans=max_replans,
        max_tasks=max_tasks,
        max_plan_chars=max_plan_chars,
        timeout=timeout,
    )
    try:
        if http:
            anyio.run(lambda: serve_mcp_http(server, port=port))
        else:
            anyio.run(server.run_stdio_async)
    except KeyboardInterrupt:
        err.print("stopped")
    except OSError as exc:
        _fail(f"cannot serve MCP: {exc.strerror or exc}")


# -- tomasulo serve / db / keys: the REST service (tomasulo/service/_cli.py) ------------------

from .service import db_app, keys_app, serve_command  # noqa: E402 - typer only, FastAPI loads later

app.command("serve")(serve_command)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")

from .client import remote_app  # noqa: E402 - typer only; httpx and the library load when a command runs

app.add_typer(remote_app, name="remote")


if __name__ == "__main__":
    main()
