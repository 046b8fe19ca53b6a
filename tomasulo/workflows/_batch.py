"""Batch mode: a JSONL of inputs, run with bounded concurrency into an output JSONL, resumable.

Each output line is one whole JSON object, written with one ``write`` on a file opened for
appending, then flushed to disk (``fsync``) before the next:
``{"key": ..., "line": n, "ok": true, "inputs": {...}, "outputs": {...}}``, or ``"ok": false``
with ``"error"``. Values JSON cannot hold follow the rule of :func:`tomasulo.views.jsonable`.

A line's key is its ``"id"`` field (a string or an integer) when it has one; otherwise
``sha256:`` and the start of the SHA-256 of the line's canonical JSON (sorted keys, no spaces,
ASCII), so inserting, removing or moving lines never changes which lines count as done. Lines
with the same content are one job. Two lines with the same ``id`` refuse the batch.

One bad line (not UTF-8, not JSON, ``NaN``, a number too large, not an object, a lone surrogate,
an unknown, missing or mistyped input) fails that line only: its record says why, and the other
lines run.

A rerun skips keys already done (``ok: true``); failed records, and a last line torn by a crash,
are dropped first (the file is rewritten to a temporary file and renamed over it), so each key
appears at most once. An output file with lines that are not batch records is refused rather than
rewritten. ``--out`` may not be the inputs file, and a lock file (``.NAME.lock`` beside the
output, left in place) stops a second batch from writing the same output at the same time.

A symbolic link as ``--out`` is followed: the lock, the rewrite and the appends all go to the
file it points to (one lock whichever path names it; the link stays a link). An output with more
than one hard link is refused, since a rewrite by rename would split it from its other names.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from ..exceptions import WorkflowError
from ..views import find_lone_surrogate, jsonable
from ._loader import LoadedWorkflow
from ._run import StepRunner, run_workflow

__all__ = ["BatchLine", "BatchReport", "check_batch_paths", "read_batch_inputs", "run_batch"]


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


@dataclass(frozen=True, slots=True)
class BatchLine:
    """One line of an inputs file.

    Attributes:
        key: the line's ``id``, or ``sha256:...`` of its content.
        line: its 1-based line number.
        inputs: the bound inputs (``None`` when the line is bad).
        error: why the line cannot run, or ``None``.
        given: what the line held, for the output record (``None`` when it was not JSON).
    """

    key: Any
    line: int
    inputs: dict[str, Any] | None = None
    error: str | None = None
    given: Any = None


def _content_key(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()[:20]


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is too large for a float")
    return value


def _parse_line(workflow: LoadedWorkflow, raw: bytes, number: int) -> BatchLine:
    stripped = raw.strip()
    try:
        text = stripped.decode("utf-8")
    except UnicodeDecodeError as exc:
        return BatchLine(
            _content_key(stripped),
            number,
            error=f"not UTF-8 text: byte 0x{stripped[exc.start]:02x} at offset {exc.start} of the line",
        )
    try:
        record = json.loads(text, parse_constant=_no_constants, parse_float=_finite)
    except (ValueError, RecursionError) as exc:
        why = str(exc) if not isinstance(exc, RecursionError) else "nested too deeply"
        return BatchLine(_content_key(stripped), number, error=f"not JSON: {why}")
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    hashed = _content_key(canonical.encode("ascii"))
    if not isinstance(record, dict):
        return BatchLine(hashed, number, error="each line must be a JSON object of inputs", given=record)
    surrogate = find_lone_surrogate(record)
    if surrogate is not None:
        return BatchLine(
            hashed,
            number,
            error=f"a string holds a lone surrogate ({surrogate}), which is not text; "
            "write the character itself or a valid \\u escape pair",
            given=record,
        )
    given = dict(record)
    if "id" in record:
        key = record.pop("id")
        if isinstance(key, bool) or not isinstance(key, str | int):
            return BatchLine(hashed, number, error='"id" must be a string or an integer', given=given)
    else:
        key = hashed
    try:
        bound = workflow.bind_inputs(record)
    except WorkflowError as exc:
        return BatchLine(key, number, error=str(exc).split(": ", 1)[-1], given=given)
    return BatchLine(key, number, inputs=bound, given=given)


def read_batch_inputs(workflow: LoadedWorkflow, path: str | os.PathLike[str]) -> list[BatchLine]:
    """Every non-blank line of an inputs JSONL, checked against the workflow.

    A bad line is returned with its ``error`` set; lines with the same content appear once.

    Raises:
        WorkflowError: the file cannot be read, or two lines have the same ``id``.
    """
    where = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise WorkflowError(f"cannot read the inputs file: {exc.strerror}", path=where) from None
    out: list[BatchLine] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        line = _parse_line(workflow, raw, number)
        mark = json.dumps(line.key)
        if mark in seen:
            has_id = isinstance(line.given, dict) and line.given.get("id") == line.key
            if not has_id:
                continue  # the same content again: one job
            raise WorkflowError(
                f"the id {line.key!r} appears twice (lines {seen[mark]} and {number}); ids must be unique",
                path=where,
                line=number,
            )
        seen[mark] = number
        out.append(line)
    return out


def check_batch_paths(inputs_path: str | os.PathLike[str], out_path: str | os.PathLike[str]) -> None:
    """Refuse an output that is the inputs file (by any path, link or hard link) or a folder.

    Raises:
        WorkflowError: saying which.
    """
    inputs, out = Path(inputs_path), Path(out_path)
    try:
        same = os.path.samefile(inputs, out)
    except OSError:
        same = inputs.resolve() == out.resolve()
    if same:
        raise WorkflowError(
            f"--out {out} is the inputs file {inputs}: the results would overwrite the inputs; "
            "give another --out file"
        )
    if out.is_dir():
        raise WorkflowError(f"--out {out} is a folder; give a file such as results.jsonl")


def _is_record(value: Any) -> bool:
    return isinstance(value, dict) and "key" in value and isinstance(value.get("ok"), bool)


def _completed(out_path: Path) -> set[str]:
    """Keys already done; drops failed records and a torn last line by an atomic rewrite."""
    try:
        raw = out_path.read_bytes()
    except FileNotFoundError:
        return set()
    kept: list[bytes] = []
    done: set[str] = set()
    changed = False
    lines = raw.splitlines(keepends=True)
    for number, line in enumerate(lines, 1):
        record: Any = None
        if line.endswith(b"\n"):
            try:
                record = json.loads(line.decode("utf-8"))
            except (ValueError, RecursionError):
                record = None
        if _is_record(record):
            key = json.dumps(record["key"])
            if record["ok"] is True and key not in done:
                done.add(key)
                kept.append(line)
                continue
        elif line.strip() and not _torn(line, last=number == len(lines)):
            raise WorkflowError(
                f"line {number} is not a batch result, so this file is not safe to rewrite; "
                "give a new --out file",
                path=str(out_path),
            )
        changed = True
    if changed:
        fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.writelines(kept)
                f.flush()
                os.fsync(f.fileno())
            shutil.copymode(out_path, tmp)
            os.replace(tmp, out_path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _sync_folder(out_path.parent)
    return done


_RECORD_START = b'{"key"'


def _torn(line: bytes, *, last: bool) -> bool:
    """Whether ``line`` is what a crash leaves of a record: its start, without the newline."""
    if line.startswith(_RECORD_START):
        return True  # torn, or a torn line that a later record ran into
    return last and not line.endswith(b"\n") and _RECORD_START.startswith(line)


def _sync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every system can open a folder
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _locked(out_path: Path) -> Iterator[None]:
    """Hold ``.NAME.lock`` beside the output for the whole batch (refused if another holds it)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        yield
        return
    lock_path = out_path.with_name(f".{out_path.name}.lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise WorkflowError(
            f"--out {out_path}: cannot create the lock file {lock_path.name} beside it "
            f"({exc.strerror}); give an --out file in a folder you can write"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip()
            who = f" (process {holder})" if holder.isdigit() else ""
            raise WorkflowError(
                f"another batch is writing this file{who}: it holds {lock_path.name}; "
                "wait for it to finish, or give another --out",
                path=str(out_path),
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


class _Sink:
    """Appends whole lines, each flushed to disk before the call returns."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


def _encode(record: dict[str, Any]) -> bytes:
    return (json.dumps(jsonable(record), ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


def _real_out(out_path: str | os.PathLike[str]) -> Path:
    """The file ``out_path`` names, links followed, with its folder made (one file, one lock)."""
    out = Path(os.path.realpath(out_path))
    try:
        links = out.stat().st_nlink
    except OSError:
        links = 1
    if links > 1:
        raise WorkflowError(
            f"--out {out_path} has {links} hard links; a rerun rewrites it by rename, which would "
            "split it from its other names; give a file with one name"
        )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WorkflowError(f"cannot create the folder {out.parent}: {exc.strerror}", path=str(out)) from None
    return out


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
    ``on_start(to_run, skipped)`` is called once the lines are read, and
    ``on_progress(key, state, note)`` as each line starts (``running``) and ends (``done`` or
    ``failed``, with the error as ``note``).

    Raises:
        WorkflowError: ``out_path`` is the inputs file or a folder, has several hard links, has
            no folder where its lock can be made, another batch is writing it, it holds lines
            that are not batch records, the inputs cannot be read, or two lines share an ``id``.
        OSError: the output cannot be written.
    """
    if concurrency < 1:
        raise WorkflowError(f"concurrency must be at least 1, got {concurrency}")
    check_batch_paths(inputs_path, out_path)
    jobs = read_batch_inputs(workflow, inputs_path)
    out = _real_out(out_path)
    report = BatchReport()
    with _locked(out):
        done = _completed(out)
        todo = [job for job in jobs if json.dumps(job.key) not in done]
        report.skipped = len(jobs) - len(todo)
        if on_start is not None:
            on_start(len(todo), report.skipped)
        if not todo:
            return report
        await _run_all(workflow, todo, out, runner, concurrency, on_progress, report)
    return report


async def _run_all(
    workflow: LoadedWorkflow,
    todo: list[BatchLine],
    out: Path,
    runner: StepRunner,
    concurrency: int,
    on_progress: Callable[[Any, str, str], None] | None,
    report: BatchReport,
) -> None:
    limiter = anyio.CapacityLimiter(concurrency)
    lock = anyio.Lock()
    sink = _Sink(out)

    async def one(job: BatchLine) -> None:
        async with limiter:
            if on_progress is not None:
                on_progress(job.key, "running", "")
            result: dict[str, Any]
            if job.inputs is None:
                result = {"ok": False, "inputs": job.given, "error": f"line {job.line}: {job.error}"}
            else:
                try:
                    result = (await run_workflow(workflow, job.inputs, runner)).to_json()
                except Exception as exc:  # one bad line must not stop the batch
                    result = {"ok": False, "inputs": job.inputs, "error": f"{type(exc).__name__}: {exc}"}
        data = _encode({"key": job.key, "line": job.line, **result})
        async with lock:
            await anyio.to_thread.run_sync(sink.write, data)
            report.ran += 1
            if not result["ok"]:
                report.failed += 1
        if on_progress is not None:
            on_progress(job.key, "done" if result["ok"] else "failed", str(result.get("error") or ""))

    try:
        async with anyio.create_task_group() as tg:
            for job in todo:
                tg.start_soon(one, job)
    finally:
        sink.close()
