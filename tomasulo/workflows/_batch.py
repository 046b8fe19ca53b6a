"""Batch mode: a JSONL of inputs, run with bounded concurrency into an output JSONL, resumable.

Each output line is one whole JSON object written with a single ``write`` and flushed:
``{"key": ..., "ok": true, "inputs": {...}, "outputs": {...}}`` or ``"ok": false`` with
``"error"``. A line's key is its ``"id"`` field when it has one, else its 1-based line number.
A rerun skips keys already done (``ok: true``); failed records and a torn last line left by a
crash are dropped first (the file is rewritten to a temporary file and renamed over), so each key
appears at most once. All input lines are checked before anything runs: a bad line stops the
batch with its line number and nothing is written.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from ..exceptions import WorkflowError
from ._loader import LoadedWorkflow
from ._run import StepRunner, run_workflow

__all__ = ["BatchReport", "read_batch_inputs", "run_batch"]


@dataclass
class BatchReport:
    """How a batch went: lines run now, lines skipped as already done, and failures."""

    ran: int = 0
    skipped: int = 0
    failed: int = 0

    @property
    def ok(self) -> bool:
        """Whether every line that ran succeeded."""
        return self.failed == 0


def read_batch_inputs(
    workflow: LoadedWorkflow, path: str | os.PathLike[str]
) -> list[tuple[Any, dict[str, Any]]]:
    """Every ``(key, bound inputs)`` of an inputs JSONL, checked against the workflow.

    Raises:
        WorkflowError: naming the inputs file and line of the first bad one.
    """
    where = str(path)
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise WorkflowError(f"cannot read the inputs file: {exc.strerror}", path=where) from None
    out: list[tuple[Any, dict[str, Any]]] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise WorkflowError(f"not JSON: {exc}", path=where, line=number) from None
        if not isinstance(record, dict):
            raise WorkflowError("each line must be a JSON object of inputs", path=where, line=number)
        key = record.pop("id", number)
        if json.dumps(key) in seen:
            raise WorkflowError(f"the id {key!r} appears twice", path=where, line=number)
        seen.add(json.dumps(key))
        try:
            bound = workflow.bind_inputs(record)
        except WorkflowError as exc:
            message = str(exc).split(": ", 1)[-1]
            raise WorkflowError(message, path=where, line=number) from None
        out.append((key, bound))
    return out


def _completed(out_path: Path) -> set[str]:
    """Keys already done; drops failed records and a torn last line by an atomic rewrite."""
    if not out_path.exists():
        return set()
    raw = out_path.read_text(encoding="utf-8")
    kept: list[str] = []
    done: set[str] = set()
    changed = False
    for line in raw.splitlines(keepends=True):
        try:
            record = json.loads(line) if line.endswith("\n") else None
        except ValueError:
            record = None
        if isinstance(record, dict) and record.get("ok") is True:
            key = json.dumps(record.get("key"))
            if key not in done:
                done.add(key)
                kept.append(line)
                continue
        changed = True
    if changed:
        fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(kept)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out_path)
    return done


async def run_batch(
    workflow: LoadedWorkflow,
    inputs_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    runner: StepRunner,
    *,
    concurrency: int = 8,
    on_progress: Callable[[Any, str, str], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
) -> BatchReport:
    """Run the workflow once per line of ``inputs_path``, appending results to ``out_path``.

    At most ``concurrency`` runs at once. Rerunning with the same files skips lines already done.
    ``on_start(to_run, skipped)`` is called once the lines are checked, and
    ``on_progress(key, state, note)`` as each line starts (``running``) and ends (``done`` or
    ``failed``, with the error as ``note``).
    """
    if concurrency < 1:
        raise WorkflowError(f"concurrency must be at least 1, got {concurrency}")
    jobs = read_batch_inputs(workflow, inputs_path)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = _completed(out)
    report = BatchReport()
    todo = []
    for key, bound in jobs:
        if json.dumps(key) in done:
            report.skipped += 1
        else:
            todo.append((key, bound))
    if on_start is not None:
        on_start(len(todo), report.skipped)
    if not todo:
        return report
    limiter = anyio.CapacityLimiter(concurrency)
    lock = anyio.Lock()
    async with await anyio.open_file(out, "a", encoding="utf-8") as sink:

        async def one(key: Any, bound: dict[str, Any]) -> None:
            async with limiter:
                if on_progress is not None:
                    on_progress(key, "running", "")
                try:
                    result = (await run_workflow(workflow, bound, runner)).to_json()
                except Exception as exc:  # one bad line must not stop the batch
                    result = {"ok": False, "inputs": bound, "error": f"{type(exc).__name__}: {exc}"}
            line = json.dumps({"key": key, **result}, ensure_ascii=False, default=str) + "\n"
            async with lock:
                await sink.write(line)
                await sink.flush()
                report.ran += 1
                if not result["ok"]:
                    report.failed += 1
            if on_progress is not None:
                on_progress(key, "done" if result["ok"] else "failed", str(result.get("error") or ""))

        async with anyio.create_task_group() as tg:
            for key, bound in todo:
                tg.start_soon(one, key, bound)
    return report
