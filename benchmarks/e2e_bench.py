"""End-to-end benchmark (issue 5): streaming plans against plan-then-execute, ReAct and parallel FC.

Run: ``.venv/bin/python benchmarks/e2e_bench.py`` (``--n 10`` questions per workload by default;
``--ttft 0.3 --tps 50`` for the simulated model; ``--tool-median 0.5 --tool-sigma 0.5`` for the
tools; ``--thoughts`` makes the model write a one-line thought in every turn of every mode).

Workloads shaped like the LLMCompiler paper's (ParallelQA by its ``branch`` field, HotpotQA
comparison, movie recommendation; see ``_workloads.py``) run through the real Orchestrator, over
real HTTP, against a SimulatedLLM served from its own process (``_simserver.py``). For every
workload and mode it prints the mean makespan, the mean oracle lower bound, makespan over oracle,
speedups, LLM calls and tokens (as the simulator counted them), then the issue's four goals, and
draws a Gantt chart of one run per mode into ``out/gantt-<workload>-<mode>.png``.

The ``react`` and ``parallel_fc`` modes end with a turn that only says ``join()`` and a joiner
call that writes the answer: one LLM call more than ReAct and OpenAI function calling, which
answer in their last turn. The speed goals are judged against the baselines with that turn's
time taken out (measured per run, see :func:`answered_in_last_turn`); both figures are printed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _workloads import (  # noqa: E402
    DATASETS_ENV,
    WORKLOADS,
    Item,
    Oracle,
    check_datasets,
    default_datasets,
    load_items,
    make_tools,
    oracle,
)

from tomasulo.planner import LLM  # noqa: E402
from tomasulo.runtime import Mode, Orchestrator, RunResult  # noqa: E402
from tomasulo.tools import Toolset  # noqa: E402

MODES: tuple[Mode, ...] = ("stream", "plan_then_execute", "react", "parallel_fc")


@dataclass(slots=True)
class Row:
    """One run: its result, its LLM calls as the simulator logged them, and its oracle."""

    item: Item
    mode: Mode
    result: RunResult
    t0: float
    calls: list[dict[str, Any]] = field(default_factory=list)
    bound: Oracle | None = None
    problem: str | None = None

    @property
    def prompt_tokens(self) -> int:
        return sum(c["prompt_tokens"] for c in self.calls)

    @property
    def completion_tokens(self) -> int:
        return sum(c["completion_tokens"] for c in self.calls)


# -- the simulated model in its own process -----------------------------------------------------


class SimProcess:
    """The SimulatedLLM subprocess: its URL, and the calls it logged since the last read."""

    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log = log
        self._offset = 0

    def new_calls(self) -> list[dict[str, Any]]:
        with self.log.open(encoding="utf-8") as f:
            f.seek(self._offset)
            text = f.read()
        complete = text[: text.rfind("\n") + 1]
        self._offset += len(complete.encode("utf-8"))
        return [json.loads(line) for line in complete.splitlines() if line.strip()]


@contextmanager
def sim_process(args: argparse.Namespace, workloads: Sequence[str], tmp: Path) -> Iterator[SimProcess]:
    log = tmp / "calls.jsonl"
    log.touch()
    spec = {
        "workloads": list(workloads),
        "n": args.n,
        "seed": args.seed,
        "thoughts": args.thoughts,
        "datasets": str(args.datasets),
        "ttft": args.ttft,
        "tps": args.tps,
        "log": str(log),
    }
    server = Path(__file__).resolve().parent / "_simserver.py"
    proc = subprocess.Popen(
        [sys.executable, str(server), json.dumps(spec)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http"):
            raise SystemExit(f"the simulated model did not start (exit code {proc.poll()})")
        yield SimProcess(url, log)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- running ------------------------------------------------------------------------------------


async def run_batch(
    sim: SimProcess, tools: Toolset, items: Sequence[Item], mode: Mode, concurrency: int, stagger: float = 0.0
) -> tuple[list[Row], float]:
    """Every item in ``mode`` (at most ``concurrency`` at once); returns the rows and the worst loop lag."""
    rows: list[Row] = []
    limiter = anyio.CapacityLimiter(concurrency)
    lag = 0.0
    llm = LLM(sim.url, model="simulated-llm", dialect="vllm")
    orch = Orchestrator(tools, llm, mode=mode, max_turns=32)

    async def one(item: Item, delay: float) -> None:
        await anyio.sleep(delay)  # staggered: ten requests at the same instant would queue up
        async with limiter:
            t0 = time.monotonic()
            result = await orch.run(item.question)
            rows.append(Row(item, mode, result, t0))

    async def watch_lag(stop: anyio.Event) -> None:
        nonlocal lag
        while not stop.is_set():
            before = time.monotonic()
            await anyio.sleep(0.01)
            lag = max(lag, time.monotonic() - before - 0.01)

    try:
        async with anyio.create_task_group() as outer:
            stop = anyio.Event()
            outer.start_soon(watch_lag, stop)
            async with anyio.create_task_group() as tg:
                for i, item in enumerate(items):
                    tg.start_soon(one, item, i * stagger)
            stop.set()
    finally:
        await llm.aclose()
    calls = defaultdict(list)
    for call in sim.new_calls():
        calls[call["name"]].append(call)
    for row in rows:
        row.calls = sorted(calls[row.item.name], key=lambda c: c["t"])
    return rows, lag


def check(row: Row, args: argparse.Namespace) -> None:
    """Fill in the oracle; note anything that makes the run not comparable."""
    res = row.result
    if res.status != "finished":
        row.problem = f"status {res.status}: {res.reason}"
        return
    if res.answer != row.item.answer:
        row.problem = f"answer {res.answer!r} != {row.item.answer!r}"
    durations = {}
    for step in row.item.steps:
        try:
            task = res.task(step.id)
        except KeyError:
            row.problem = f"task {step.id} never ran"
            return
        key = task.args.get("entity", task.args.get("problem"))
        if task.tool != step.tool or key != step.key or task.started is None or task.finished is None:
            row.problem = f"task {step.id} is {task.tool}({key!r}), expected {step.tool}({step.key!r})"
            return
        durations[step.id] = task.finished - task.started
    row.bound = oracle(row.item, durations, ttft=args.ttft, tps=args.tps)


# -- reporting ----------------------------------------------------------------------------------


def mean(xs: Sequence[float]) -> float:
    return statistics.fmean(xs) if xs else float("nan")


def draw(row: Row, args: argparse.Namespace, out: Path) -> Path | None:
    """The run's Gantt chart: its tasks, and its LLM calls (light: waiting for the first token)."""
    try:
        from tomasulo.views import GanttBar, bars_from, draw_gantt
    except ImportError:  # the workflows package is optional for this benchmark
        return None
    bars = list(bars_from(row.result.tasks))
    turn = 0
    for call in row.calls:
        sent = call["t"] - row.t0
        first = sent + args.ttft
        end = first + max(call["completion_tokens"] - 1, 0) / args.tps
        if call["kind"] == "join":
            label = "LLM joiner"
        else:
            turn += 1
            label = "LLM plan" if call["kind"] == "plan" else f"LLM turn {turn}"
        bars.append(GanttBar(label=label, start=first, end=end, status="llm", ready=sent))
    bound = row.bound.makespan if row.bound else float("nan")
    title = (
        f"{row.item.workload} / {row.mode}: makespan {row.result.makespan:.2f} s, "
        f"oracle {bound:.2f} s ({row.result.makespan / bound:.2f}x)"
    )
    return draw_gantt(bars, out / f"gantt-{row.item.workload}-{row.mode}.png", title=title)


def answered_in_last_turn(row: Row) -> float:
    """The makespan of a turn baseline had its last turn written the answer, as the real methods do.

    Our ``react`` and ``parallel_fc`` end with a turn that only says ``join()`` and then a joiner
    call that writes the answer; ReAct and OpenAI function calling answer in that last turn. So
    the time from sending that turn to sending the joiner call is dropped, as measured in the
    run (the joiner call itself stands for the answering turn).
    """
    joins: list[float] = [c["t"] for c in row.calls if c["kind"] == "join"]
    turns: list[float] = [c["t"] for c in row.calls if c["kind"] not in ("join", "plan")]
    if not joins or not turns:
        return row.result.makespan
    last_turn = max(t for t in turns if t < joins[-1])
    return row.result.makespan - (joins[-1] - last_turn)


def table(workload: str, by_mode: dict[Mode, list[Row]]) -> list[dict[str, Any]]:
    stats = []
    for mode, rows in by_mode.items():
        good = [r for r in rows if r.bound is not None]
        row: dict[str, Any] = {
            "workload": workload,
            "mode": mode,
            "runs": len(good),
            "failed": len(rows) - len(good),
            "makespan": mean([r.result.makespan for r in good]),
            "makespan_faithful": mean([answered_in_last_turn(r) for r in good]),
            "oracle": mean([r.bound.makespan for r in good if r.bound]),
            "calls": mean([len(r.calls) for r in good]),
            "prompt": mean([r.prompt_tokens for r in good]),
            "completion": mean([r.completion_tokens for r in good]),
        }
        stats.append(row)
    by = {s["mode"]: s for s in stats}
    for s in stats:
        s["ratio"] = s["makespan"] / s["oracle"]
        s["vs_react"] = by["react"]["makespan"] / s["makespan"] if "react" in by else float("nan")
        s["vs_fc"] = by["parallel_fc"]["makespan"] / s["makespan"] if "parallel_fc" in by else float("nan")
        s["vs_react_faithful"] = (
            by["react"]["makespan_faithful"] / s["makespan"] if "react" in by else float("nan")
        )
        s["vs_fc_faithful"] = (
            by["parallel_fc"]["makespan_faithful"] / s["makespan"] if "parallel_fc" in by else float("nan")
        )
        s["tokens"] = s["prompt"] + s["completion"]
    print(f"\n{workload} ({stats[0]['runs'] + stats[0]['failed']} questions; means per question)")
    head = f"{'mode':<18}{'makespan':>9}{'oracle':>8}{'ratio':>7}{'vsReAct':>8}{'vsPFC':>7}{'calls':>7}"
    print(head + f"{'prompt':>8}{'compl':>7}{'tokens':>8}")
    for s in stats:
        print(
            f"{s['mode']:<18}{s['makespan']:>8.2f}s{s['oracle']:>7.2f}s{s['ratio']:>7.3f}"
            f"{s['vs_react']:>7.2f}x{s['vs_fc']:>6.2f}x{s['calls']:>7.1f}"
            f"{s['prompt']:>8.0f}{s['completion']:>7.0f}{s['tokens']:>8.0f}"
            + (f"  ({s['failed']} runs not comparable)" if s["failed"] else "")
        )
    turn_modes = [s for s in stats if s["mode"] in ("react", "parallel_fc")]
    if turn_modes and "stream" in by:
        parts = [
            f"{s['mode']} {s['makespan_faithful']:.2f}s "
            f"(stream {s['makespan_faithful'] / by['stream']['makespan']:.2f}x faster)"
            for s in turn_modes
        ]
        print("turn baselines answering in their last turn, as the real methods do: " + ", ".join(parts))
    stream = [r for r in by_mode.get("stream", []) if r.bound is not None and r.calls]
    if stream:
        ask = mean([r.calls[0]["t"] - r.t0 for r in stream])
        joins = [(r, [c for c in r.calls if c["kind"] == "join"]) for r in stream]
        wait = mean(
            [j[0]["t"] - r.t0 - max(t.finished or 0.0 for t in r.result.tasks) for r, j in joins if j]
        )
        gap = mean([r.result.makespan - r.bound.makespan for r in stream if r.bound])
        print(
            f"stream overheads: start -> plan request {ask * 1000:.0f} ms, last task -> joiner request "
            f"{wait * 1000:.0f} ms, makespan - oracle {gap * 1000:.0f} ms (means)"
        )
    return stats


def goals(stats: list[dict[str, Any]]) -> list[tuple[str, str, bool]]:
    get = {(s["workload"], s["mode"]): s for s in stats}
    out = []
    ratios = [(s["ratio"], s["workload"]) for s in stats if s["mode"] == "stream"]
    if ratios:
        worst, where = max(ratios)
        out.append(
            ("streaming makespan / oracle <= 1.05 (worst workload)", f"{worst:.3f} ({where})", worst <= 1.05)
        )
    if ("movie", "stream") in get and ("movie", "react") in get:
        x = get["movie", "stream"]["vs_react_faithful"]
        nominal = get["movie", "stream"]["vs_react"]
        ceiling = get["movie", "react"]["makespan_faithful"] / get["movie", "stream"]["oracle"]
        value = (
            f"{x:.2f}x against a react that answers in its last turn ({nominal:.2f}x against ours); "
            f"ceiling at this model speed, react / oracle: {ceiling:.2f}x"
        )
        out.append(("movie: streaming >= 3.7x faster than react", value, x >= 3.7))
    if ("parallelqa", "stream") in get and ("parallelqa", "parallel_fc") in get:
        x = get["parallelqa", "stream"]["vs_fc_faithful"]
        nominal = get["parallelqa", "stream"]["vs_fc"]
        value = f"{x:.2f}x against parallel_fc answering in its last turn ({nominal:.2f}x against ours)"
        out.append(("parallelqa: streaming >= 1.35x faster than parallel_fc", value, x >= 1.35))
    pairs = [
        (w, get[w, "stream"]["tokens"], get[w, "react"]["tokens"])
        for w in WORKLOADS
        if (w, "stream") in get and (w, "react") in get
    ]
    if pairs:
        ok = all(a <= b for _, a, b in pairs)
        value = ", ".join(f"{w} {a:.0f} vs {b:.0f}" for w, a, b in pairs)
        out.append(("streaming uses no more tokens than react", value, ok))
    return out


def write_summary(out: Path, args: argparse.Namespace, stats: list[dict[str, Any]], met: list[Any]) -> None:
    """Everything printed, as JSON, into ``out/e2e-summary.json``."""
    out.mkdir(parents=True, exist_ok=True)
    summary = {"args": {k: str(v) for k, v in vars(args).items()}, "stats": stats, "goals": met}
    (out / "e2e-summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")


# -- main ---------------------------------------------------------------------------------------


async def bench(args: argparse.Namespace) -> int:
    workloads = args.workloads
    modes: list[Mode] = args.modes
    check_datasets(args.datasets, workloads)
    items = {
        w: load_items(w, args.n, datasets=args.datasets, seed=args.seed, thoughts=args.thoughts)
        for w in workloads
    }
    tools = make_tools(median=args.tool_median, sigma=args.tool_sigma, seed=args.seed)
    out = Path(args.out)
    print(
        f"model: ttft {args.ttft:g} s, {args.tps:g} tokens/s; tools: log-normal median "
        f"{args.tool_median:g} s, sigma {args.tool_sigma:g}; {args.n} questions per workload, "
        f"{args.concurrency} at once, {args.stagger:g} s apart"
        + ("; thoughts in every turn" if args.thoughts else "")
    )
    all_stats: list[dict[str, Any]] = []
    bad = 0
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, sim_process(args, workloads, Path(tmp)) as sim:
        first = items[workloads[0]][0]
        await run_batch(sim, tools, [first], "stream", 1)  # warm up: connections, imports, caches
        for workload in workloads:
            by_mode: dict[Mode, list[Row]] = {}
            for mode in modes:
                rows, lag = await run_batch(sim, tools, items[workload], mode, args.concurrency, args.stagger)
                for row in rows:
                    check(row, args)
                    if row.problem:
                        bad += 1
                        print(f"  ! {row.item.name} {mode}: {row.problem}", file=sys.stderr)
                if lag > 0.05:
                    print(
                        f"  note: {workload}/{mode}: event loop lagged up to {lag * 1000:.0f} ms",
                        file=sys.stderr,
                    )
                order = {it.name: i for i, it in enumerate(items[workload])}
                by_mode[mode] = sorted(rows, key=lambda r: order[r.item.name])
                shown = next((r for r in by_mode[mode] if r.bound is not None), None)
                if shown is not None and not args.no_gantt:
                    draw(shown, args, out)
            all_stats += table(workload, by_mode)
    print(f"\ngoals ({time.monotonic() - started:.0f} s of benchmark):")
    results = goals(all_stats)
    for name, value, ok in results:
        print(f"  {'met   ' if ok else 'MISSED'}  {name}: {value}")
    if not args.no_gantt:
        print(f"Gantt charts: {out}/gantt-<workload>-<mode>.png")
    write_summary(out, args, all_stats, results)
    return 1 if bad else 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=10, help="questions per workload (default 10)")
    p.add_argument("--ttft", type=float, default=0.3, help="model time to first token, s (default 0.3)")
    p.add_argument("--tps", type=float, default=50.0, help="model tokens per second (default 50)")
    p.add_argument("--tool-median", type=float, default=0.5, help="median tool latency, s (default 0.5)")
    p.add_argument(
        "--tool-sigma", type=float, default=0.5, help="log-normal sigma of tool latency (default 0.5)"
    )
    p.add_argument("--concurrency", type=int, default=10, help="questions run at once per mode (default 10)")
    p.add_argument("--stagger", type=float, default=0.2, help="seconds between run starts (default 0.2)")
    p.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--thoughts", action="store_true", help="a one-line thought in every model turn")
    p.add_argument("--seed", type=int, default=0, help="picks the questions and the tool latencies")
    p.add_argument(
        "--datasets",
        type=Path,
        default=default_datasets(ROOT),
        help=f"the LLMCompiler question sets (default: ${DATASETS_ENV}, else ../shared/datasets)",
    )
    p.add_argument("--out", default=str(ROOT / "out"), help="folder for the Gantt charts and summary")
    p.add_argument("--no-gantt", action="store_true", help="draw no charts")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(anyio.run(bench, parse_args()))
