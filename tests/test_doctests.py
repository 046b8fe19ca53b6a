"""Every docstring example in the package runs and prints what it says.

Examples that need what a test run does not have (a server, a model, a file elsewhere) are
marked ``# doctest: +SKIP`` where they stand.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import tomasulo

ROOT = Path(__file__).resolve().parents[1]
#: Modules not imported here, and why.
NOT_IMPORTED = {
    "tomasulo.workflows.__main__": "running it regenerates workflow.schema.json",
}


def _modules() -> list[str]:
    names = ["tomasulo"]
    for info in pkgutil.walk_packages(tomasulo.__path__, "tomasulo."):
        if info.name not in NOT_IMPORTED:
            names.append(info.name)
    return sorted(names)


def _with_examples() -> list[str]:
    found = []
    for name in _modules():
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec is not None else None
        if origin and ">>>" in Path(origin).read_text(encoding="utf-8"):
            found.append(name)
    return found


MODULES = _with_examples()


def test_the_walk_finds_the_examples() -> None:
    assert len(MODULES) > 30 and "tomasulo.tools._tool" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # examples name files such as examples/facts.sql
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    out: list[str] = []
    tests = [t for t in finder.find(module, name) if t.examples]
    for test in tests:
        if test.filename and Path(test.filename).resolve() != Path(module.__file__ or "").resolve():
            continue  # found through a re-export: checked in its own module
        runner.run(test, out=out.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, "".join(out)
