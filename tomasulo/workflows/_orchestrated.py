"""The :class:`StepRunner` backed by the Orchestrator, and where a ``query:`` step's model comes from.

Plan steps run through :meth:`Orchestrator.execute_plan` (no LLM); query steps through
:meth:`Orchestrator.run` with an :class:`~tomasulo.planner.LLM` built from the workflow's
``model`` section, overridden by flags and environment variables.

>>> runner = OrchestratorRunner(on_event=lambda step, event: print(step, event))  # doctest: +SKIP
>>> result = await run_workflow(load_workflow("examples/research.yaml"), {}, runner)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import get_args

import httpx

from ..dispatcher import Event, Limits
from ..exceptions import ConfigError
from ..executors import Executor
from ..grammar import Plan
from ..planner import DEFAULT_DIALECT as _LIBRARY_DEFAULT
from ..planner import LLM, Dialect
from ..runtime import Budget, Orchestrator, RunResult
from ..tools import Toolset
from ._gantt import GanttBar, bars_from
from ._model import ModelConfig, RunLimits
from ._run import StepResult

__all__ = ["ENV_VARS", "ModelSettings", "OrchestratorRunner", "StepRun", "resolve_model"]

#: The environment variables that configure the LLM (flags win over them; they win over files).
ENV_VARS = {
    "base_url": "TOMASULO_BASE_URL",
    "model": "TOMASULO_MODEL",
    "dialect": "TOMASULO_DIALECT",
    "api_key": "TOMASULO_API_KEY",
}

#: Used when neither a flag, an environment variable nor the workflow names a dialect: the
#: library's own default (no grammar is sent, plans are read in compat mode), so any
#: OpenAI-compatible server works and ``LLM(...)`` in code behaves the same.
DEFAULT_DIALECT: Dialect = _LIBRARY_DEFAULT

MODEL_HELP = (
    "no LLM is configured. Give one with flags:\n"
    '  tomasulo ask "..." --base-url http://127.0.0.1:8000/v1 --model NAME --dialect vllm\n'
    "or with environment variables:\n"
    "  export TOMASULO_BASE_URL=http://127.0.0.1:11434/v1 TOMASULO_MODEL=qwen2.5 TOMASULO_DIALECT=ollama\n"
    "  export TOMASULO_API_KEY=...   (only if the server needs a key)\n"
    "or in a workflow file: model: {base_url: ..., model: ..., dialect: ...}.\n"
    f"Dialects: {', '.join(get_args(Dialect))}. "
    "To try it with no real server: tomasulo simulate-llm --script replies.txt"
)


@dataclass(frozen=True, slots=True)
class ModelSettings:
    """A fully resolved LLM configuration."""

    base_url: str
    model: str
    dialect: Dialect
    api_key: str = "EMPTY"
    temperature: float | None = None

    def llm(self, http_client: httpx.AsyncClient | None = None) -> LLM:
        """An :class:`LLM` for these settings."""
        return LLM(
            self.base_url,
            model=self.model,
            dialect=self.dialect,
            api_key=self.api_key,
            temperature=self.temperature,
            http_client=http_client,
        )


def resolve_model(
    config: ModelConfig | None = None,
    *,
    base_url: str | None = None,
    model: str | None = None,
    dialect: str | None = None,
    api_key: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ModelSettings:
    """Combine flags (the keyword arguments), environment variables and the workflow's ``model``.

    The API key comes from ``api_key``, else ``TOMASULO_API_KEY``, else the variable named by
    ``config.api_key_env``.

    Raises:
        ConfigError: no base URL or model anywhere (the message says how to give them), or an
            unknown dialect.
    """
    env = os.environ if environ is None else environ
    cfg = config or ModelConfig()
    url = base_url or env.get(ENV_VARS["base_url"]) or cfg.base_url
    name = model or env.get(ENV_VARS["model"]) or cfg.model
    kind = dialect or env.get(ENV_VARS["dialect"]) or cfg.dialect or DEFAULT_DIALECT
    if not url or not name:
        missing = " and ".join(k for k, v in (("a base URL", url), ("a model name", name)) if not v)
        raise ConfigError(f"{MODEL_HELP}\n(missing: {missing})")
    if kind not in get_args(Dialect):
        raise ConfigError(f"unknown dialect {kind!r}; choose one of {', '.join(get_args(Dialect))}")
    key = api_key or env.get(ENV_VARS["api_key"])
    if key is None and cfg.api_key_env:
        key = env.get(cfg.api_key_env)
    return ModelSettings(url, name, kind, key or "EMPTY", cfg.temperature)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class StepRun:
    """One step's run: its id, the Orchestrator's result, and when it started (seconds from the first)."""

    step: str
    result: RunResult
    offset: float


def _step_result(run: RunResult) -> StepResult:
    out = StepResult(values=run.results, answer=run.answer if run.ok else None)
    for t in run.tasks:
        if t.status != "succeeded":
            out.errors[t.id] = (t.message or t.status).removeprefix(f"task {t.id} ({t.tool}) ")
    if not run.ok:
        out.failure = f"the run {run.status}: {run.reason}" if run.reason else f"the run {run.status}"
    return out


@dataclass
class OrchestratorRunner:
    """Runs workflow steps with the Orchestrator.

    Args:
        on_event: called with ``(step id, event)`` for every event of every step, in order.
        model: flags that override the workflow's ``model`` (``base_url``, ``model``,
            ``dialect``, ``api_key``); environment variables are read too.
        executor: where tool calls run (default: local).
        http_client: an ``httpx.AsyncClient`` for the LLM (tests may inject one).
        keep_runs: keep each step's :class:`StepRun` in ``runs`` (for reports and Gantt charts);
            batch mode turns it off.
    """

    on_event: Callable[[str, Event], None] | None = None
    model: Mapping[str, str | None] = field(default_factory=dict)
    executor: Executor | None = None
    http_client: httpx.AsyncClient | None = None
    keep_runs: bool = True
    runs: list[StepRun] = field(default_factory=list)
    _t0: float | None = None

    def _callback(self, step: str) -> Callable[[Event], None] | None:
        on_event = self.on_event
        if on_event is None:
            return None
        return lambda event: on_event(step, event)

    def _offset(self) -> float:
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        return now - self._t0

    def _keep(self, step: str, result: RunResult, offset: float) -> None:
        if self.keep_runs:
            self.runs.append(StepRun(step, result, offset))

    def gantt_bars(self) -> list[GanttBar]:
        """Every kept step's tasks as Gantt bars on one time axis (labelled by step when several)."""
        several = len({r.step for r in self.runs}) > 1
        bars: list[GanttBar] = []
        for run in self.runs:
            bars += bars_from(run.result, offset=run.offset, group=run.step if several else "")
        return bars

    async def run_plan(self, plan: Plan, toolset: Toolset, limits: RunLimits, *, step: str) -> StepResult:
        """Dispatch ``plan`` with no LLM, at most ``limits.max_concurrency`` tasks at once."""
        orch = Orchestrator(
            toolset,
            executor=self.executor,
            limits=Limits(max_concurrency=limits.max_concurrency, deadline=limits.timeout),
            max_tasks=limits.max_tasks,
            on_event=self._callback(step),
        )
        offset = self._offset()
        result = await orch.execute_plan(plan)
        self._keep(step, result, offset)
        return _step_result(result)

    async def run_query(
        self, question: str, toolset: Toolset, model: ModelConfig | None, limits: RunLimits, *, step: str
    ) -> StepResult:
        """Plan ``question`` with the LLM and run it; ``answer`` is the joiner's answer.

        Raises:
            ConfigError: no model is configured (see :func:`resolve_model`).
        """
        given = self.model
        settings = resolve_model(
            model,
            base_url=given.get("base_url"),
            model=given.get("model"),
            dialect=given.get("dialect"),
            api_key=given.get("api_key"),
        )
        async with settings.llm(self.http_client) as llm:
            orch = Orchestrator(
                toolset,
                llm,
                executor=self.executor,
                limits=Limits(max_concurrency=limits.max_concurrency),
                budget=Budget(max_replans=limits.max_replans, max_seconds=limits.timeout),
                max_tasks=limits.max_tasks,
                on_event=self._callback(step),
            )
            offset = self._offset()
            result = await orch.run(question)
        self._keep(step, result, offset)
        return _step_result(result)
