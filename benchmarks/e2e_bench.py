"""End-to-end benchmark (issues 5 and 16): streaming plans against plan-then-execute, ReAct and
parallel function calling, under latency models of real servers.

Run: ``.venv/bin/python benchmarks/e2e_bench.py`` (``--quick`` for a short run: 3 questions per
workload under the 8B preset with and without its prefix cache). ``--presets`` picks the latency
models: the names in :data:`tomasulo.testing.LATENCY_PRESETS` (prefill at a measured rate and a
prefix cache), the same with ``-nocache`` (no prefix cache), and ``flat`` (``--ttft``/``--tps``, no
prefill: the model of issue 5). ``--n 10`` questions per workload; ``--tool-median 0.5
--tool-sigma 0.5`` for the tools; ``--thoughts`` makes the model write a one-line thought in
every turn of every mode.

Workloads shaped like the LLMCompiler paper's (ParallelQA by its ``branch`` field, HotpotQA
comparison, movie recommendation; see ``_workloads.py``) run through the real Orchestrator, over
real HTTP, against a SimulatedLLM served from its own process (``_simserver.py``), one process
per preset (its prefix cache is shared by every run, as a server's is). The turn baselines speak
native tool calling and answer in their last turn, as ReAct and OpenAI function calling do;
nothing is corrected in the accounting.

Per preset, workload and mode it prints the mean makespan; the oracle (the streamed plan's lower
bound with the run's own tool durations and its calls' modelled times to first token), with and
without the joiner's call; makespan over oracle; LLM calls; prompt, cached and completion
tokens; the time to the answer's first token; and for each baseline the ceiling (baseline over
the oracle: the most any schedule could gain) next to the speedup reached. Then the joiner's
time to first token with and without the prefix cache, the issue's goals, and a Gantt chart of
one run per mode (``out/gantt-<preset>-<workload>-<mode>.png``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx

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
    simulator_process,
)

from tomasulo.planner import LLM  # noqa: E402
from tomasulo.runtime import Mode, Orchestrator, RunResult  # noqa: E402
from tomasulo.testing import LATENCY_PRESETS, Latency  # noqa: E402
from tomasulo.tools import Toolset  # noqa: E402


@dataclass(frozen=True, slots=True)
class BenchMode:
    """A mode as the benchmark runs it: the runtime mode, Orchestrator options, and whether
    its oracle includes the joiner's call."""

    name: str
    mode: Mode
    options: dict[str, Any] = field(default_factory=dict)
    joiner: bool = True


BENCH_MODES: dict[str, BenchMode] = {
    m.name: m
    for m in (
        BenchMode("stream", "stream"),
        # -- stream_template: answer templates that skip the joiner (issue 16, the `templates`
        # work) go here, e.g. BenchMode("stream_template", "stream", {"joiner": "auto"},
        # joiner=False), with the scripted plan ending in join("...") (`_workloads.Item`) ------
        BenchMode("plan_then_execute", "plan_then_execute"),
        BenchMode("react", "react"),
        BenchMode("parallel_fc", "parallel_fc"),
    )
}
MODES = tuple(BENCH_MODES)
#: The modes whose oracle is their own streamed plan's (the others are compared with stream's).
PLANNED = ("stream", "plan_then_execute", "stream_template")
BASELINES = ("react", "parallel_fc")
QUICK_PRESETS = ("llama-8b-1xh100", "llama-8b-1xh100-nocache")


def preset_names() -> list[str]:
    return [*LATENCY_PRESETS, *(f"{p}-nocache" for p in LATENCY_PRESETS), "flat"]


def preset_latency_cache(name: str) -> bool:
    """Whether the preset of that name keeps a prefix cache that the benchmark's prompts reach."""
    lat = LATENCY_PRESETS.get(name)
    return lat is not None and lat.prefix_cache_tokens > 0 and lat.cache_min_tokens <= 1000


def preset_latency(name: str, args: argparse.Namespace) -> Latency:
    """The latency model a preset name stands for."""
    if name == "flat":
        return Latency(ttft=args.ttft, tokens_per_second=args.tps)
    if name.endswith("-nocache"):
        return dataclasses.replace(LATENCY_PRESETS[name.removesuffix("-nocache")], prefix_cache_tokens=0)
    return LATENCY_PRESETS[name]


@dataclass(slots=True)
class Row:
    """One run: its result, its LLM calls as the simulator recorded them, and its oracle."""

    item: Item
    mode: str
    result: RunResult
    t0: float
    calls: list[dict[str, Any]] = field(default_factory=list)
    bound: Oracle | None = None
    problem: str | None = None
    ok: bool = False

    def tokens(self, kind: str) -> int:
        return sum(c[f"{kind}_tokens"] for c in self.calls)

    @property
    def answer_first_token(self) -> float:
        """Seconds from the run's start to the answer's first token: the joiner's or the last
        turn's first token; the run's end when no call wrote the answer."""
        last = self.calls[-1] if self.calls else None
        if last is None or last["kind"] == "plan":
            return self.result.makespan
        return last["t"] + last["ttft"] - self.t0


# -- the simulated model in its own process -----------------------------------------------------


class SimProcess:
    """The SimulatedLLM subprocess: its URL, and the calls it recorded since the last read."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._seen = 0

    async def new_calls(self) -> list[dict[str, Any]]:
        async with httpx.AsyncClient() as http:
            got = await http.get(self.url.removesuffix("/v1") + "/bench/calls", params={"after": self._seen})
        got.raise_for_status()
        calls: list[dict[str, Any]] = got.json()
        self._seen += len(calls)
        return calls


@contextmanager
def sim_process(args: argparse.Namespace, workloads: Sequence[str], latency: Latency) -> Iterator[SimProcess]:
    spec = {
        "workloads": list(workloads),
        "n": args.n,
        "seed": args.seed,
        "thoughts": args.thoughts,
        "datasets": str(args.datasets),
        "latency": dataclasses.asdict(latency),
    }
    server = Path(__file__).resolve().parent / "_simserver.py"
    with simulator_process([str(server), json.dumps(spec)]) as url:
        yield SimProcess(url)


# -- running ------------------------------------------------------------------------------------


async def run_batch(
    sim: SimProcess,
    tools: Toolset,
    items: Sequence[Item],
    mode: BenchMode,
    concurrency: int,
    stagger: float = 0.0,
    prefix_cache: bool = False,
) -> tuple[list[Row], float]:
    """Every item in ``mode`` (at most ``concurrency`` at once); returns the rows and the worst loop lag."""
    rows: list[Row] = []
    limiter = anyio.CapacityLimiter(concurrency)
    lag = 0.0
    llm = LLM(sim.url, model="simulated-llm", dialect="vllm", prefix_cache=prefix_cache)
    orch = Orchestrator(tools, llm, mode=mode.mode, max_turns=32, **mode.options)

    async def one(item: Item, delay: float) -> None:
        await anyio.sleep(delay)  # staggered: ten requests at the same instant would queue up
        async with limiter:
            t0 = time.monotonic()
            result = await orch.run(item.question)
            rows.append(Row(item, mode.name, result, t0))

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
    for call in await sim.new_calls():
        calls[call["name"]].append(call)
    for row in rows:
        row.calls = sorted(calls[row.item.name], key=lambda c: c["t"])
    return rows, lag


def check(row: Row, latency: Latency) -> None:
    """Check the run; fill in the oracle for the planned modes."""
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
    row.ok = row.problem is None
    if row.mode in PLANNED and row.ok:
        plan = next((c for c in row.calls if c["kind"] == "plan"), None)
        join = next((c for c in row.calls if c["kind"] == "join"), None)
        if plan is None:
            row.problem, row.ok = "no plan call was recorded", False
            return
        tps = latency.tokens_per_second or float("inf")
        row.bound = oracle(
            row.item, durations, ttft=plan["ttft"], tps=tps, join_ttft=join["ttft"] if join else None
        )


# -- reporting ----------------------------------------------------------------------------------


def mean(xs: Sequence[float]) -> float:
    return statistics.fmean(xs) if xs else float("nan")


def draw(row: Row, preset: str, latency: Latency, out: Path) -> Path | None:
    """The run's Gantt chart: its tasks, and its LLM calls (light: waiting for the first token)."""
    try:
        from tomasulo.views import GanttBar, bars_from, draw_gantt
    except ImportError:  # the workflows package is optional for this benchmark
        return None
    bars = list(bars_from(row.result.tasks))
    tps = latency.tokens_per_second or float("inf")
    turn = 0
    for call in row.calls:
        sent = call["t"] - row.t0
        first = sent + call["ttft"]
        end = first + max(call["completion_tokens"] - 1, 0) / tps
        if call["kind"] == "join":
            label = "LLM joiner"
        else:
            turn += 1
            label = "LLM plan" if call["kind"] == "plan" else f"LLM turn {turn}"
        bars.append(GanttBar(label=label, start=first, end=end, status="llm", ready=sent))
    bound = row.bound.makespan if row.bound else None
    title = f"{preset} / {row.item.workload} / {row.mode}: makespan {row.result.makespan:.2f} s" + (
        f", oracle {bound:.2f} s ({row.result.makespan / bound:.3f}x)" if bound else ""
    )
    return draw_gantt(bars, out / f"gantt-{preset}-{row.item.workload}-{row.mode}.png", title=title)


def table(preset: str, workload: str, by_mode: dict[str, list[Row]]) -> list[dict[str, Any]]:
    """Print one workload's table under one preset; return its figures."""
    stats = []
    for mode, rows in by_mode.items():
        good = [r for r in rows if r.ok]
        bound = [r for r in good if r.bound is not None]
        joins = [c for r in good for c in r.calls if c["kind"] == "join"]
        stats.append(
            {
                "preset": preset,
                "workload": workload,
                "mode": mode,
                "runs": len(good),
                "failed": len(rows) - len(good),
                "makespan": mean([r.result.makespan for r in good]),
                "oracle": mean([r.bound.makespan for r in bound if r.bound]),
                "oracle_no_join": mean([r.bound.join_start for r in bound if r.bound]),
                "ratio": mean([r.result.makespan / r.bound.makespan for r in bound if r.bound]),
                "calls": mean([len(r.calls) for r in good]),
                "prompt": mean([r.tokens("prompt") for r in good]),
                "cached": mean([r.tokens("cached") for r in good]),
                "completion": mean([r.tokens("completion") for r in good]),
                "answer_ttft": mean([r.answer_first_token for r in good]),
                "joiner_ttft": mean([c["ttft"] for c in joins]),
                "joiner_prompt": mean([c["prompt_tokens"] for c in joins]),
                "joiner_cached": mean([c["cached_tokens"] for c in joins]),
            }
        )
    by = {s["mode"]: s for s in stats}
    for s in stats:
        s["tokens"] = s["prompt"] + s["completion"]
    print(f"\n{preset} / {workload} ({stats[0]['runs'] + stats[0]['failed']} questions; means per question)")
    print(
        f"{'mode':<18}{'makespan':>9}{'oracle':>8}{'-joiner':>8}{'ratio':>7}{'calls':>6}"
        f"{'prompt':>8}{'cached':>8}{'compl':>7}{'answer@':>9}"
    )
    for s in stats:
        oracle_text = f"{s['oracle']:>7.3f}s{s['oracle_no_join']:>7.3f}s{s['ratio']:>7.3f}"
        if s["mode"] not in PLANNED:
            oracle_text = f"{'-':>8}{'-':>8}{'-':>7}"
        print(
            f"{s['mode']:<18}{s['makespan']:>8.3f}s{oracle_text}{s['calls']:>6.1f}"
            f"{s['prompt']:>8.0f}{s['cached']:>8.0f}{s['completion']:>7.0f}{s['answer_ttft']:>8.3f}s"
            + (f"  ({s['failed']} runs not comparable)" if s["failed"] else "")
        )
    stream = by.get("stream")
    if stream is not None:
        for name in BASELINES:
            base = by.get(name)
            if base is None:
                continue
            base["ceiling"] = base["makespan"] / stream["oracle"]
            base["reached"] = base["makespan"] / stream["makespan"]
            base["of_ceiling"] = base["reached"] / base["ceiling"]
            print(
                f"  vs {name}: ceiling ({name} / oracle) {base['ceiling']:.3f}x, "
                f"reached {base['reached']:.3f}x ({base['of_ceiling']:.1%} of the ceiling)"
            )
        print(
            f"  joiner: {stream['joiner_prompt']:.0f} prompt tokens, {stream['joiner_cached']:.0f} cached, "
            f"time to first token {stream['joiner_ttft'] * 1000:.1f} ms"
        )
        runs = [r for r in by_mode["stream"] if r.ok and r.bound is not None and r.calls]
        if runs:
            ask = mean([r.calls[0]["t"] - r.t0 for r in runs])
            joins = [(r, [c for c in r.calls if c["kind"] == "join"]) for r in runs]
            wait = mean(
                [j[0]["t"] - r.t0 - max(t.finished or 0.0 for t in r.result.tasks) for r, j in joins if j]
            )
            gap = mean([r.result.makespan - r.bound.makespan for r in runs if r.bound])
            print(
                f"  stream overheads: start -> plan request {ask * 1000:.1f} ms, last task -> joiner request "
                f"{wait * 1000:.1f} ms, makespan - oracle {gap * 1000:.1f} ms (means)"
            )
    return stats


def goals(stats: list[dict[str, Any]]) -> list[tuple[str, str, bool]]:
    """The issue's goals, judged on every preset and workload that ran."""
    get = {(s["preset"], s["workload"], s["mode"]): s for s in stats}
    out = []
    ratios = [(s["ratio"], s["preset"], s["workload"]) for s in stats if s["mode"] == "stream"]
    if ratios:
        worst, preset, where = max(ratios)
        out.append(
            ("streaming makespan / oracle <= 1.02", f"worst {worst:.4f} ({preset}, {where})", worst <= 1.02)
        )
    for name in BASELINES:
        fractions = [
            (s["of_ceiling"], s["preset"], s["workload"])
            for s in stats
            if "of_ceiling" in s and s["mode"] == name
        ]
        if fractions:
            worst_f, preset, where = min(fractions)
            out.append(
                (
                    f"speedup over {name} >= 97% of the ceiling",
                    f"worst {worst_f:.1%} ({preset}, {where})",
                    worst_f >= 0.97,
                )
            )
    pairs = [
        (p, w, get[p, w, "stream"]["tokens"], get[p, w, "react"]["tokens"])
        for (p, w, m) in get
        if m == "stream" and (p, w, "react") in get
    ]
    if pairs:
        worst_pair = max(pairs, key=lambda x: x[2] / x[3])
        value = f"worst {worst_pair[2]:.0f} vs {worst_pair[3]:.0f} ({worst_pair[0]}, {worst_pair[1]})"
        out.append(("streaming uses no more tokens than react", value, all(a <= b for *_, a, b in pairs)))
    cuts = []
    for (p, w, m), s in get.items():
        twin = get.get((f"{p}-nocache", w, m))
        if m == "stream" and twin is not None and s["joiner_ttft"] == s["joiner_ttft"]:
            cuts.append((1 - s["joiner_ttft"] / twin["joiner_ttft"], p, w))
    caching = [c for c in cuts if preset_latency_cache(c[1])]
    if caching:
        best = max(caching)
        value = ", ".join(f"{p}/{w} {c:.0%}" for c, p, w in caching)
        out.append(
            (
                "the prefix cache cuts the joiner's time to first token >= 50% (preset vs -nocache; "
                "layouts: prompt_cache_bench.py)",
                f"best {best[0]:.0%}: {value}",
                min(c for c, _, _ in caching) >= 0.5,
            )
        )
    return out


def write_summary(out: Path, args: argparse.Namespace, stats: list[dict[str, Any]], met: list[Any]) -> None:
    """Everything printed, as JSON, into ``out/e2e-summary.json``."""
    out.mkdir(parents=True, exist_ok=True)
    summary = {"args": {k: str(v) for k, v in vars(args).items()}, "stats": stats, "goals": met}
    (out / "e2e-summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")


# -- main ---------------------------------------------------------------------------------------


async def run_preset(
    preset: str, args: argparse.Namespace, items: dict[str, list[Item]], tools: Toolset
) -> tuple[list[dict[str, Any]], int]:
    """Every workload and mode under one preset, against a fresh simulated server."""
    latency = preset_latency(preset, args)
    out = Path(args.out)
    stats: list[dict[str, Any]] = []
    bad = 0
    with sim_process(args, args.workloads, latency) as sim:
        first = items[args.workloads[0]][0]
        await run_batch(sim, tools, [first], BENCH_MODES["stream"], 1)  # warm up: connections, imports
        await sim.new_calls()
        for workload in args.workloads:
            by_mode: dict[str, list[Row]] = {}
            for name in args.modes:
                mode = BENCH_MODES[name]
                shared = args.prefix_cache_joiner and latency.prefix_cache_tokens > 0
                rows, lag = await run_batch(
                    sim, tools, items[workload], mode, args.concurrency, args.stagger, prefix_cache=shared
                )
                for row in rows:
                    check(row, latency)
                    if row.problem:
                        bad += 1
                        print(f"  ! {preset} {row.item.name} {name}: {row.problem}", file=sys.stderr)
                if lag > 0.05:
                    print(
                        f"  note: {preset}/{workload}/{name}: event loop lagged up to {lag * 1000:.0f} ms",
                        file=sys.stderr,
                    )
                order = {it.name: i for i, it in enumerate(items[workload])}
                by_mode[name] = sorted(rows, key=lambda r: order[r.item.name])
                shown = next((r for r in by_mode[name] if r.ok), None)
                if shown is not None and not args.no_gantt:
                    draw(shown, preset, latency, out)
            stats += table(preset, workload, by_mode)
    return stats, bad


async def bench(args: argparse.Namespace) -> int:
    if args.quick:
        args.n = min(args.n, 3)
        args.presets = args.presets or list(QUICK_PRESETS)
    args.presets = args.presets or [p for p in preset_names() if p != "flat"]
    check_datasets(args.datasets, args.workloads)
    items = {
        w: load_items(w, args.n, datasets=args.datasets, seed=args.seed, thoughts=args.thoughts)
        for w in args.workloads
    }
    tools = make_tools(median=args.tool_median, sigma=args.tool_sigma, seed=args.seed)
    print(
        f"presets: {', '.join(args.presets)}; tools: log-normal median {args.tool_median:g} s, sigma "
        f"{args.tool_sigma:g}; {args.n} questions per workload, {args.concurrency} at once, "
        f"{args.stagger:g} s apart"
        + ("; thoughts in every turn" if args.thoughts else "")
        + ("; LLM(prefix_cache=True) on caching presets" if args.prefix_cache_joiner else "")
    )
    for preset in args.presets:
        lat = preset_latency(preset, args)
        prefill = (
            f"prefill {lat.prefill_tokens_per_second:,.0f} tokens/s"
            if lat.prefill_tokens_per_second
            else "no prefill"
        )
        cache = (
            f"prefix cache {lat.prefix_cache_tokens:,} tokens"
            if lat.prefix_cache_tokens
            else "no prefix cache"
        )
        print(
            f"  {preset}: base TTFT {lat.ttft * 1000:g} ms, {lat.tokens_per_second:g} tokens/s, "
            f"{prefill}, {cache}"
        )
    all_stats: list[dict[str, Any]] = []
    bad = 0
    started = time.monotonic()
    for preset in args.presets:
        stats, failed = await run_preset(preset, args, items, tools)
        all_stats += stats
        bad += failed
    print(f"\ngoals ({time.monotonic() - started:.0f} s of benchmark):")
    results = goals(all_stats)
    for name, value, ok in results:
        print(f"  {'met   ' if ok else 'MISSED'}  {name}: {value}")
    if not args.no_gantt:
        print(f"Gantt charts: {args.out}/gantt-<preset>-<workload>-<mode>.png")
    write_summary(Path(args.out), args, all_stats, results)
    return 1 if bad else 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--quick", action="store_true", help=f"3 questions per workload, presets {', '.join(QUICK_PRESETS)}"
    )
    p.add_argument(
        "--presets", nargs="+", choices=preset_names(), help="latency models (default: all but flat)"
    )
    p.add_argument("--n", type=int, default=10, help="questions per workload (default 10)")
    p.add_argument("--ttft", type=float, default=0.3, help="the flat preset's time to first token, s (0.3)")
    p.add_argument("--tps", type=float, default=50.0, help="the flat preset's tokens per second (50)")
    p.add_argument("--tool-median", type=float, default=0.5, help="median tool latency, s (default 0.5)")
    p.add_argument(
        "--tool-sigma", type=float, default=0.5, help="log-normal sigma of tool latency (default 0.5)"
    )
    p.add_argument("--concurrency", type=int, default=10, help="questions run at once per mode (default 10)")
    p.add_argument("--stagger", type=float, default=0.2, help="seconds between run starts (default 0.2)")
    p.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--thoughts", action="store_true", help="a one-line thought in every model turn")
    p.add_argument(
        "--prefix-cache-joiner",
        action="store_true",
        help="LLM(prefix_cache=True) on presets with a prefix cache (joiner extends the planner's prompt)",
    )
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
