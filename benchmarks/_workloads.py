"""Workloads for ``e2e_bench.py``: questions, their plans per mode, the tools, and the oracle.

Three shapes from the LLMCompiler paper, read from ``../shared/datasets`` (never copied here):

- ``parallelqa``: ``branch`` searches, each followed by a math step, then a final math step;
- ``hotpotqa``: two independent searches, then join;
- ``movie``: one search per movie named in the question (8, sometimes 9), then join.

Every question gets one DAG of :class:`Step` s. The scripted model answers each mode from it: the
whole plan (``stream``, ``plan_then_execute``), one call per turn in id order (``react``), or one
batch per turn, a batch being the steps whose inputs all come from earlier turns (``parallel_fc``).
The turn baselines speak native tool calling (``tools`` in the request, ``tool_calls`` in the
answer, the results as ``tool`` messages) and answer in their last turn, in plain text, as ReAct
and OpenAI function calling do; a call that needs an earlier result carries the part of it that
matters (the sentence with the quantity) in its arguments, as a model must write it there itself.
Ids are the same in every mode, so a run's task ``k`` is the DAG's step ``k`` whatever the mode.

The tools sleep for a log-normal time (median and sigma from the flags) drawn from a hash of the
call's own content, so every mode sees the same latency for the same call.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from tomasulo.testing import Reply, ToolCall, split_tokens
from tomasulo.tools import Tool, Toolset, tool

WORKLOADS = ("parallelqa", "hotpotqa", "movie")
FILES = {
    "parallelqa": "parallelqa_dataset.json",
    "hotpotqa": "hotpotqa_comparison.json",
    "movie": "movie_recommendations_formatted.json",
}
#: Where the datasets are looked for first (a folder holding the files in :data:`FILES`).
DATASETS_ENV = "TOMASULO_DATASETS"


def default_datasets(root: Path) -> Path:
    """The datasets folder for a clone at ``root``: ``$TOMASULO_DATASETS``, else the first
    ``shared/datasets`` beside ``root`` or beside a folder above it (a clone next to
    ``../shared``, or a worktree a level deeper), else ``root/../shared/datasets``."""
    given = os.environ.get(DATASETS_ENV)
    if given:
        return Path(given)
    for folder in [root, *root.parents]:
        candidate = folder.parent / "shared" / "datasets"
        if candidate.is_dir():
            return candidate
    return root.parent / "shared" / "datasets"


def check_datasets(folder: Path, workloads: Sequence[str] = WORKLOADS) -> None:
    """Exit with a message that says what is missing, where it was looked for and how to point
    the benchmark elsewhere, when a workload's file is not in ``folder``."""
    missing = [FILES[w] for w in workloads if not (folder / FILES[w]).is_file()]
    if not missing:
        return
    where = "does not exist" if not folder.is_dir() else "lacks " + ", ".join(missing)
    raise SystemExit(
        f"the benchmark datasets are missing: {folder.resolve()} {where}.\n"
        f"The end-to-end benchmark reads the LLMCompiler question sets ({', '.join(FILES.values())})\n"
        "from ../shared/datasets beside the clone (see the README.md there); they are never copied\n"
        f"into the project. Point at another folder with `make bench DATASETS=DIR`, "
        f"{DATASETS_ENV}=DIR, or --datasets DIR."
    )


#: Words that start questions and are capitalised without naming anything.
_STOP = frozenset(
    "a after among an are between both can compare could considering did do does find given had has "
    "have how if in is of on take the these this were what when where which who whose why with would".split()
)
_CAPITALISED = re.compile(r"[A-Z][\w'.&-]*(?:\s+(?:of|the|de|del|la|in|for)?\s*[A-Z0-9][\w'.&-]*)*")
_MOVIES = re.compile(r"Find a movie similar to (.*)\nOptions:\n(.*)", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Step:
    """One tool call of a question's DAG: ``search(entity=key)`` or ``math(problem=key, context=[deps])``."""

    id: int
    tool: str
    key: str
    deps: tuple[int, ...] = ()
    level: int = 0  # the parallel_fc turn it belongs to (0-based)

    def line(self) -> str:
        """The step in the plan language."""
        key = json.dumps(self.key, ensure_ascii=False)
        if self.tool == "search":
            return f"{self.id}. search(entity={key})"
        refs = ", ".join(f"${d}" for d in self.deps)
        return f"{self.id}. math(problem={key}, context=[{refs}])"


@dataclass(frozen=True, slots=True)
class Item:
    """One question with its DAG; ``thoughts`` adds a one-line thought to every model turn."""

    workload: str
    id: str
    question: str
    answer: str
    steps: tuple[Step, ...]
    thoughts: bool = False

    @property
    def name(self) -> str:
        """``workload:id``."""
        return f"{self.workload}:{self.id}"

    @property
    def join_id(self) -> int:
        """The id of the plan's ``join()``."""
        return len(self.steps) + 1

    def plan_text(self) -> str:
        """The whole plan, as the streaming and plan-then-execute planner writes it."""
        lines = [f"Thought: {self._why(self.steps)}"] if self.thoughts else []
        lines += [s.line() for s in self.steps]
        return "\n".join([*lines, f"{self.join_id}. join()"]) + "\n"

    def turn(self, mode: str, start_id: int) -> str:
        """The reply to a ``react`` or ``parallel_fc`` turn that continues from ``start_id``."""
        todo = [s for s in self.steps if s.id >= start_id]
        if not todo:
            head = [f"Thought: {self._why(())}"] if self.thoughts else []
            return "\n".join([*head, f"{start_id}. join()"]) + "\n"
        batch = todo[:1] if mode == "react" else [s for s in todo if s.level == todo[0].level]
        head = [f"Thought: {self._why(batch)}"] if self.thoughts else []
        lines = [*head, *(s.line() for s in batch)]
        return "\n".join([*lines, f"{batch[-1].id + 1}. join()"]) + "\n"

    def turn_reply(self, mode: str, messages: Sequence[Mapping[str, Any]]) -> Reply:
        """The answer to a native tool-calling turn: the next call (``react``) or batch
        (``parallel_fc``) after the calls already answered in ``messages``, else the answer."""
        results = {
            str(m.get("tool_call_id")): str(m.get("content") or "")
            for m in messages
            if m.get("role") == "tool"
        }
        todo = [s for s in self.steps if _call_id(s.id) not in results]
        if not todo:
            text = f"Thought: {self._why(())}\n" if self.thoughts else ""
            return Reply(text + self.answer)
        batch = todo[:1] if mode == "react" else [s for s in todo if s.level == todo[0].level]
        calls = []
        for step in batch:
            if step.tool == "search":
                args: dict[str, Any] = {"entity": step.key}
            else:
                args = {"problem": step.key, "context": [_relevant(results[_call_id(d)]) for d in step.deps]}
            calls.append(ToolCall(step.tool, args, id=_call_id(step.id)))
        return Reply.calls(*calls, text=f"Thought: {self._why(batch)}\n" if self.thoughts else "")

    def joiner_reply(self) -> str:
        """The joiner's decision: finish with the dataset's answer."""
        return json.dumps(
            {"thought": "The results answer the question.", "action": "finish", "answer": self.answer},
            ensure_ascii=False,
        )

    @staticmethod
    def _why(steps: Sequence[Step]) -> str:
        if not steps:
            return "The results so far answer the question."
        tools = sorted({s.tool for s in steps})
        return f"I need {len(steps)} {' and '.join(tools)} call{'s' if len(steps) > 1 else ''} next."


def _call_id(step: int) -> str:
    return f"call_{step}"


def _relevant(result: str) -> str:
    """What a model passes on of an earlier result: the sentence with the quantity, if any."""
    for sentence in result.split(". "):
        if "measured quantity" in sentence:
            return sentence.strip().rstrip(".") + "."
    return result


# -- the questions ------------------------------------------------------------------------------


def _entities(question: str, need: int) -> list[str]:
    """Capitalised names in ``question`` (leading question words dropped), padded to ``need``."""
    found: list[str] = []
    for span in _CAPITALISED.findall(question):
        words = span.split()
        while words and words[0].lower() in _STOP:
            words.pop(0)
        name = " ".join(words).strip(" .,'?")
        if len(name) > 1 and name not in found:
            found.append(name)
    while len(found) < need:
        found.append(f"subject {len(found) + 1} of {question[:40].rstrip()}")
    return found[:need]


def build_steps(workload: str, question: str, branch: int = 2) -> tuple[Step, ...]:
    """The DAG the paper's planner writes for a question of ``workload``."""
    if workload == "movie":
        m = _MOVIES.match(question)
        names = []
        if m is not None:
            names = [x.strip() for x in m.group(1).split(",") if x.strip()]
            names += [x.strip() for x in m.group(2).split("\n") if x.strip()]
        if not names:
            names = _entities(question, 8)
        return tuple(Step(i, "search", n) for i, n in enumerate(names, 1))
    if workload == "hotpotqa":
        return tuple(Step(i, "search", n) for i, n in enumerate(_entities(question, 2), 1))
    if workload == "parallelqa":
        names = _entities(question, branch)
        steps = [Step(i, "search", n) for i, n in enumerate(names, 1)]
        steps += [
            Step(branch + i, "math", f"the quantity the question asks about for {n}", (i,), 1)
            for i, n in enumerate(names, 1)
        ]
        final = tuple(range(branch + 1, 2 * branch + 1))
        steps.append(Step(2 * branch + 1, "math", "which one answers the question", final, 2))
        return tuple(steps)
    raise ValueError(f"unknown workload {workload!r}; choose one of {', '.join(WORKLOADS)}")


def load_items(workload: str, n: int, *, datasets: Path, seed: int = 0, thoughts: bool = False) -> list[Item]:
    """``n`` questions of ``workload`` (a seeded sample, distinct questions) with their DAGs."""
    path = datasets / FILES[workload]
    try:
        rows: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SystemExit(f"dataset not found: {path} (pass --datasets DIR)") from None
    seen: dict[str, dict[str, Any]] = {}
    for row in rows:
        seen.setdefault(str(row["question"]).strip(), row)
    unique = list(seen.values())
    picked = random.Random(f"{seed}:{workload}").sample(unique, min(n, len(unique)))
    return [
        Item(
            workload,
            str(row["id"]),
            str(row["question"]).strip(),
            str(row["answer"]).strip(),
            build_steps(workload, str(row["question"]).strip(), int(row.get("branch", 2))),
            thoughts,
        )
        for row in picked
    ]


# -- the scripted model -------------------------------------------------------------------------


def classify(body: Mapping[str, Any]) -> tuple[str, str, int]:
    """From a chat request: (``join``/``plan``/``react``/``parallel_fc``, the question's user
    message, the start id of a text turn).

    A request that declares ``tools`` is a native tool-calling turn: ``react`` when it allows
    one call per turn (``parallel_tool_calls: false``), else ``parallel_fc``. The joiner's
    prompt extends the planner's and asks for the decision in its last message.
    """
    messages = body.get("messages") or []
    system = str(messages[0].get("content", "")) if messages else ""
    question = next(
        (str(m.get("content") or "") for m in messages if m.get("role") == "user"),
        "",
    )
    last = str(messages[-1].get("content") or "") if messages else ""
    if body.get("tools"):
        return ("react" if body.get("parallel_tool_calls") is False else "parallel_fc"), question, 0
    if system.startswith("You are the joiner") or "You are now the joiner" in last:
        return "join", question, 0
    m = re.search(r"Continue the plan from task (\d+)", last)
    start = int(m.group(1)) if m else 1
    if "Work step by step" in system:
        return "react_text", question, start
    if "Work in rounds" in system:
        return "parallel_fc_text", question, start
    return "plan", question, start


def item_finder(items: Sequence[Item]) -> Callable[[str], Item]:
    """A function of a prompt's question text giving its benchmark item (the longest question
    that starts it, so that one question that extends another is told apart)."""
    longest_first = sorted(items, key=lambda it: -len(it.question))

    def find(user: str) -> Item:
        for item in longest_first:
            if user.startswith(f"Question: {item.question}"):
                return item
        raise LookupError(f"no benchmark question matches the prompt {user[:120]!r}")

    return find


@contextmanager
def simulator_process(argv: Sequence[str]) -> Iterator[str]:
    """Start a simulated-model process (``python *argv``) that prints its URL and serves until
    its standard input closes; yield the URL, then stop it (killed after 10 s)."""
    proc = subprocess.Popen([sys.executable, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http"):
            raise SystemExit(f"the simulated model did not start (exit code {proc.poll()})")
        yield url
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def make_replier(items: Sequence[Item]) -> Callable[[Mapping[str, Any]], tuple[Item, str, Reply]]:
    """A function of a request body giving (the question's item, the call's kind, the reply)."""
    find = item_finder(items)

    def reply(body: Mapping[str, Any]) -> tuple[Item, str, Reply]:
        kind, user, start = classify(body)
        item = find(user)
        if kind == "join":
            return item, kind, Reply(item.joiner_reply())
        if kind == "plan":
            return item, kind, Reply(item.plan_text())
        if kind in ("react", "parallel_fc"):
            return item, kind, item.turn_reply(kind, body.get("messages") or [])
        mode = kind.removesuffix("_text")
        return item, mode, Reply(item.turn(mode, start))

    return reply


# -- the tools ----------------------------------------------------------------------------------


def tool_delay(name: str, key: str, *, median: float, sigma: float, seed: int) -> float:
    """A log-normal delay (``median``, ``sigma``) drawn from the call's content: same call, same delay."""
    digest = hashlib.sha256(f"{seed}|{name}|{key}".encode()).digest()
    u = (int.from_bytes(digest[:8], "big") + 0.5) / 2**64
    return median * math.exp(sigma * _normal_quantile(u))


def _normal_quantile(u: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(u)


def _synthetic_article(entity: str) -> str:
    h = int.from_bytes(hashlib.sha256(entity.encode()).digest()[:4], "big")
    year, size = 1850 + h % 170, 10 + h % 9000
    return (
        f"{entity} is widely described in reference works and is known by that name. "
        f"It first became notable in {year}, and accounts since then agree on its main facts. "
        f"Its best-known measured quantity is about {size} in the usual unit. "
        f"{entity} is often compared with others of its kind, ranking around {1 + h % 50} among them. "
        f"It has been the subject of studies, articles and popular attention for many years."
    )


def _math_answer(problem: str, context: list[str] | None) -> str:
    h = int.from_bytes(hashlib.sha256(f"{problem}|{context}".encode()).digest()[:4], "big")
    return f"{h % 100000 / 10:g}"


def result_of(step: Step, results: Mapping[int, Any]) -> str:
    """What the benchmark's tool returns for ``step`` given its inputs' results (no waiting)."""
    if step.tool == "search":
        return _synthetic_article(step.key)
    return _math_answer(step.key, [results[d] for d in step.deps])


def make_tools(*, median: float, sigma: float, seed: int) -> Toolset:
    """``search(entity)`` and ``math(problem, context)`` with the benchmark's latency model."""

    @tool
    async def search(entity: str) -> str:
        """Search an encyclopedia and return the first sentences of the entity's article.

        Args:
            entity: the name of the person, place, thing or work to look up.
        """
        await anyio.sleep(tool_delay("search", entity, median=median, sigma=sigma, seed=seed))
        return _synthetic_article(entity)

    @tool
    async def math(problem: str, context: list[str] | None = None) -> str:
        """Solve a math problem stated in words, using the given context.

        Args:
            problem: the problem, in words.
            context: results of earlier tasks the problem needs.
        """
        await anyio.sleep(tool_delay("math", problem, median=median, sigma=sigma, seed=seed))
        return _math_answer(problem, context)

    tools: list[Tool] = [search, math]
    return Toolset(tools)


# -- the oracle ---------------------------------------------------------------------------------


def token_times(text: str, *, ttft: float, tps: float) -> tuple[list[str], list[float]]:
    """The simulator's tokens of ``text`` and when each is due after the request (no jitter)."""
    tokens = split_tokens(text)
    return tokens, [ttft + i / tps for i in range(len(tokens))]


def emitted_at(text: str, ends: Sequence[int], *, ttft: float, tps: float) -> list[float]:
    """For each character offset in ``ends``, when the token holding the character before it is due."""
    tokens, times = token_times(text, ttft=ttft, tps=tps)
    out = []
    for end in ends:
        pos, index = 0, 0
        for index, tok in enumerate(tokens):  # noqa: B007 - index is used after the loop
            pos += len(tok)
            if pos >= end:
                break
        out.append(times[index])
    return out


def call_time(text: str, *, ttft: float, tps: float) -> float:
    """Seconds from a request to the last token of a reply of ``text``."""
    n = max(len(split_tokens(text)), 1)
    return ttft + (n - 1) / tps


@dataclass(frozen=True, slots=True)
class Oracle:
    """The lower bound of one run: each task at ``max(line emitted, inputs done)``, then the joiner.

    ``join_start`` is the makespan without the joiner's call (when every task is done and the
    plan has joined): the bound of a run that needs no joiner (an answer template).
    """

    makespan: float
    starts: dict[int, float] = field(default_factory=dict)
    plan_done: float = 0.0
    join_start: float = 0.0


def oracle(
    item: Item, durations: Mapping[int, float], *, ttft: float, tps: float, join_ttft: float | None = None
) -> Oracle:
    """The streaming schedule's makespan with the run's own tool durations (a true lower bound).

    The plan is streamed from time 0 at the model's rate after ``ttft`` (the plan call's time to
    first token, prefill included); task ``i`` starts when the token closing its call is out and
    every task it references has finished; the joiner is asked once every task is done and the
    plan's ``join()`` is out, and takes its own time to first token (``join_ttft``, else
    ``ttft``) plus its reply.
    """
    text = item.plan_text()
    ends = []
    for step in item.steps:
        line = step.line()
        ends.append(text.index(line) + len(line))
    join_line = f"{item.join_id}. join()"
    ends.append(text.index(join_line) + len(join_line))
    times = emitted_at(text, ends, ttft=ttft, tps=tps)
    starts: dict[int, float] = {}
    finish: dict[int, float] = {}
    for step, emitted in zip(item.steps, times, strict=False):
        start = max([emitted, *(finish[d] for d in step.deps)])
        starts[step.id] = start
        finish[step.id] = start + durations[step.id]
    plan_done = times[-1]
    join_start = max([plan_done, *finish.values()])
    joiner = call_time(item.joiner_reply(), ttft=ttft if join_ttft is None else join_ttft, tps=tps)
    return Oracle(join_start + joiner, starts, plan_done, join_start)
