"""``tomasulo remote ...``: the service's runs from the command line, through :class:`Client`.

    tomasulo remote ask "question"        start a run, follow its events, print the answer
    tomasulo remote run FILE [-i k=v]      a plan (text, or .json) or a workflow (.yaml) file
    tomasulo remote events RUN [--after N] follow a run's events (to its end)
    tomasulo remote cancel RUN             cancel a run
    tomasulo remote interrupt RUN "msg"    send a run a user's message (it replans)

Every command takes ``--url`` (env ``TOMASULO_URL``) and reads the key from the variable
``--api-key-env`` names (default ``TOMASULO_API_KEY``). What people read goes to standard
output (one line per change, then the answer); ``--json`` prints JSON there instead (the run,
or for ``events`` one event per line); ``error:`` lines go to standard error. Exit codes:
0 done, 1 the run did not finish (or the service failed), 2 bad input.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from ..exceptions import ServiceConnectionError, ServiceError, UserError

__all__ = ["remote_app"]

T = TypeVar("T")

remote_app = typer.Typer(
    help="Talk to a tomasulo service (`tomasulo serve`): ask, run, events, cancel, interrupt.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

UrlOpt = Annotated[
    str | None,
    typer.Option("--url", envvar="TOMASULO_URL", help="The service (default http://127.0.0.1:8080)."),
]
KeyEnvOpt = Annotated[
    str, typer.Option("--api-key-env", help="The environment variable that holds the API key.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON on standard output instead of text.")]
WaitOpt = Annotated[
    bool, typer.Option("--follow/--no-follow", help="Follow the run to its end (or print its id and go).")
]
MetaOpt = Annotated[list[str], typer.Option("--metadata", "-m", help="key=value, kept with the run.")]
ModelOpt = Annotated[str | None, typer.Option("--model", help="A model the tenant was granted.")]
ToolsOpt = Annotated[list[str], typer.Option("--tool", "-t", help="Only these tools (repeat).")]


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _fail(message: str, code: int = 2) -> NoReturn:
    sys.stderr.write(f"error: {message}\n")
    raise typer.Exit(code)


def _client(url: str | None, api_key_env: str) -> Any:
    from ._sync import Client

    key = os.environ.get(api_key_env)
    if not key:
        _fail(f"--api-key-env {api_key_env}: no such environment variable is set (it holds the API key)")
    try:
        return Client(url, api_key=key)
    except UserError as exc:
        _fail(str(exc))


def _calling(fn: Callable[[], T]) -> T:
    """``fn()``, with the service's errors as one ``error:`` line (2: the request was refused)."""
    try:
        return fn()
    except ServiceConnectionError as exc:
        _fail(str(exc), 1)
    except ServiceError as exc:
        _fail(str(exc), 2 if 400 <= exc.status < 500 and exc.status not in (408, 429) else 1)
    except UserError as exc:
        _fail(str(exc))


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _fail(f"{flag} takes key=value, got {item!r}")
        found[key] = value
    return found


def _print_run(run: Any, as_json: bool) -> int:
    if as_json:
        _say(run.model_dump_json())
    else:
        _say(f"run {run.id}: {run.status}" + (f" ({run.reason})" if run.reason else ""))
        if run.answer is not None:
            _say(run.answer)
    return 0 if run.status == "finished" else 1


def _follow(client: Any, run_id: str, after: int | None, as_json: bool) -> Iterator[Any]:
    """The run's events, shown one line per change (nothing shown under ``--json``)."""
    from rich.console import Console

    from ..views import LiveView

    view = LiveView(Console(highlight=False, soft_wrap=True), live=False)
    for event in client.events(run_id, after=after):
        if not as_json:
            view.handle(event)
        yield event


def _start_and_follow(client: Any, follow: bool, as_json: bool, **create: Any) -> int:
    run = _calling(lambda: client.create_run(**create))
    if not follow:
        if as_json:
            _say(run.model_dump_json())
        else:
            _say(run.id)
        return 0
    if not as_json:
        sys.stderr.write(f"run {run.id}: {run.status}\n")
    _calling(lambda: [None for _ in _follow(client, run.id, None, as_json)])
    return _print_run(_calling(lambda: client.get_run(run.id)), as_json)


@remote_app.command("ask")
def ask(
    question: Annotated[str, typer.Argument(help="The question for the planner.")],
    url: UrlOpt = None,
    api_key_env: KeyEnvOpt = "TOMASULO_API_KEY",
    mode: Annotated[
        str, typer.Option("--mode", help="stream, plan_then_execute, react or parallel_fc.")
    ] = "stream",
    model: ModelOpt = None,
    tools: ToolsOpt = [],  # noqa: B006
    metadata: MetaOpt = [],  # noqa: B006
    follow: WaitOpt = True,
    as_json: JsonOpt = False,
) -> None:
    """Ask the service a question; follow the run and print its answer."""
    if mode not in ("stream", "plan_then_execute", "react", "parallel_fc"):
        _fail(f"--mode must be stream, plan_then_execute, react or parallel_fc, not {mode!r}")
    with _client(url, api_key_env) as client:
        code = _start_and_follow(
            client, follow, as_json, query=question, mode=mode, model=model,
            tools=tools or None, metadata=_pairs(metadata, "--metadata"),
        )  # fmt: skip
    raise typer.Exit(code)


@remote_app.command("run")
def run(
    file: Annotated[
        Path, typer.Argument(help="A plan (text; .json: the JSON dialect) or a workflow (.yaml).")
    ],
    inputs: Annotated[list[str], typer.Option("--input", "-i", help="A workflow's input: key=value.")] = [],  # noqa: B006
    url: UrlOpt = None,
    api_key_env: KeyEnvOpt = "TOMASULO_API_KEY",
    tools: ToolsOpt = [],  # noqa: B006
    metadata: MetaOpt = [],  # noqa: B006
    follow: WaitOpt = True,
    as_json: JsonOpt = False,
) -> None:
    """Run a plan or a workflow file on the service; follow the run and print its result."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"cannot read {file}: {getattr(exc, 'strerror', None) or exc}")
    create: dict[str, Any] = {"tools": tools or None, "metadata": _pairs(metadata, "--metadata")}
    if file.suffix.lower() in (".yaml", ".yml"):
        given: dict[str, Any] = {}
        for key, value in _pairs(inputs, "-i").items():
            try:
                given[key] = json.loads(value)
            except ValueError:
                given[key] = value  # a bare word is a string
        create.update(workflow=text, inputs=given)
    else:
        if inputs:
            _fail("-i goes with a workflow file (.yaml); a plan has no inputs")
        create.update(plan=text, dialect="json" if file.suffix.lower() == ".json" else "text")
    with _client(url, api_key_env) as client:
        code = _start_and_follow(client, follow, as_json, **create)
    raise typer.Exit(code)


@remote_app.command("events")
def events(
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    after: Annotated[int | None, typer.Option("--after", min=0, help="Only events past this seq.")] = None,
    url: UrlOpt = None,
    api_key_env: KeyEnvOpt = "TOMASULO_API_KEY",
    as_json: JsonOpt = False,
) -> None:
    """Follow a run's events to its end (``--json``: one event's JSON per line)."""
    with _client(url, api_key_env) as client:

        def show() -> None:
            for event in _follow(client, run_id, after, as_json):
                if as_json:
                    _say(json.dumps(event.to_json(), ensure_ascii=False))

        _calling(show)
    raise typer.Exit(0)


@remote_app.command("cancel")
def cancel(
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    url: UrlOpt = None,
    api_key_env: KeyEnvOpt = "TOMASULO_API_KEY",
    as_json: JsonOpt = False,
) -> None:
    """Cancel a run (it may take a moment to end)."""
    with _client(url, api_key_env) as client:
        found = _calling(lambda: client.cancel(run_id))
    if as_json:
        _say(found.model_dump_json())
    else:
        _say(f"run {found.id}: {found.status}" + (" (cancelling)" if not found.done else ""))
    raise typer.Exit(0)


@remote_app.command("interrupt")
def interrupt(
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    message: Annotated[str, typer.Argument(help="What the user says; the run replans with it.")],
    url: UrlOpt = None,
    api_key_env: KeyEnvOpt = "TOMASULO_API_KEY",
    as_json: JsonOpt = False,
) -> None:
    """Send a running run a user's message."""
    with _client(url, api_key_env) as client:
        accepted = _calling(lambda: client.interrupt(run_id, message))
    if as_json:
        _say(json.dumps({"id": run_id, "accepted": accepted}))
    else:
        _say(f"run {run_id}: message {'accepted' if accepted else 'not accepted'}")
    raise typer.Exit(0 if accepted else 1)
