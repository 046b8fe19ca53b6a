"""The package reads one way: layers point down, nothing imports another package's privates.

The rules, checked on every ``import`` in ``tomasulo/`` (lazy imports inside functions and
``if TYPE_CHECKING:`` imports included: they are dependencies too):

- **Privacy.** A module or name whose name starts with ``_`` is private to the package that
  holds it: only modules inside that package (or its subpackages) may import it. So a package is
  used from outside through its ``__init__`` (its public names), never through its ``_name.py``
  modules. The root package's private modules (``tomasulo._text``, ``tomasulo._logging``) are
  shared internals of every subpackage by the same rule.
- **Layers.** Each subpackage (and top-level module) sits in one layer of :data:`LAYERS`; it
  may import only units of lower layers, never a peer in its own layer or anything above.
- **No cycles.** The module import graph has no cycle (a module that imports its own package's
  ``__init__`` counts, since that ``__init__`` imports it back).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1] / "tomasulo"

#: Bottom to top. A unit is a first-level subpackage or a top-level module of ``tomasulo``.
LAYERS: list[set[str]] = [
    {"exceptions", "_text", "_logging", "_version"},  # the error tree, shared helpers, the version
    {"tools"},
    {"grammar", "executors"},
    {"dispatcher", "planner"},
    {"runtime"},
    {"views"},
    {"workflows", "testing"},
    {"service", "client"},  # the service and its client know nothing of each other
    {"cli"},
    {"__init__"},  # the public face re-exports from everything below
]
LAYER = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, dotted
    target: str  # the imported module, dotted (a package means its __init__)
    names: tuple[str, ...]  # for `from target import names`; empty for `import target`
    line: int

    def where(self) -> str:
        return f"{self.source} (line {self.line}): imports {self.target}" + (
            f" [{', '.join(self.names)}]" if self.names else ""
        )


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def _imports() -> list[Import]:
    found: list[Import] = []
    for name, path in MODULES.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                found += [
                    Import(name, a.name, (), node.lineno) for a in node.names if a.name.startswith("tomasulo")
                ]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target == "tomasulo" or target.startswith("tomasulo."):
                    found.append(Import(name, target, tuple(a.name for a in node.names), node.lineno))
    return found


IMPORTS = _imports()


def _private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def _owner(imp: Import) -> str | None:
    """The package a private import belongs to, or ``None`` for a public import."""
    parts = imp.target.split(".")
    for i, part in enumerate(parts):
        if _private(part):
            return ".".join(parts[:i])
    if any(_private(n) for n in imp.names):
        return imp.target if _is_package(imp.target) else imp.target.rpartition(".")[0]
    return None


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _edges() -> list[tuple[str, str, Import]]:
    """Module-level edges: ``from pkg import sub`` points at the submodule ``pkg.sub``."""
    edges = []
    for imp in IMPORTS:
        targets = [f"{imp.target}.{n}" for n in imp.names if f"{imp.target}.{n}" in MODULES]
        if not targets or len(targets) < len(imp.names):
            targets.append(imp.target)
        edges += [(imp.source, t, imp) for t in targets if t in MODULES]
    return edges


def test_the_walk_sees_the_package() -> None:
    """Guards the checks below against passing because they looked at nothing."""
    assert "tomasulo.dispatcher._dispatcher" in MODULES and "tomasulo.cli" in MODULES
    assert len(IMPORTS) > 200
    unknown = {_unit(m) for m in MODULES} - set(LAYER)
    assert not unknown, f"put these in a layer of LAYERS: {sorted(unknown)}"


def test_no_private_imports_across_packages() -> None:
    bad = []
    for imp in IMPORTS:
        owner = _owner(imp)
        if owner is not None and not _inside(imp.source, owner):
            bad.append(f"{imp.where()}, private to {owner}: import it from {owner}'s __init__")
    assert not bad, "\n".join(bad)


def test_the_privacy_rule_catches_what_it_should() -> None:
    def owner_ok(source: str, target: str, *names: str) -> bool:
        owner = _owner(Import(source, target, names, 1))
        return owner is None or _inside(source, owner)

    assert not owner_ok("tomasulo.cli", "tomasulo.workflows._tools", "load")
    assert not owner_ok("tomasulo.cli", "tomasulo.workflows", "_import")
    assert not owner_ok("tomasulo.workflows._tools", "tomasulo.tools.builtins._registry", "X")
    assert owner_ok("tomasulo.tools._loader", "tomasulo.tools._tool", "Tool")
    assert owner_ok("tomasulo.tools.builtins._sql", "tomasulo.tools._tool", "Tool")
    assert owner_ok("tomasulo.dispatcher._resolve", "tomasulo._text", "safe_str")
    assert owner_ok("tomasulo.dispatcher._resolve", "tomasulo.tools", "Tool")


def test_layers_point_down() -> None:
    graph = nx.DiGraph()
    bad = []
    for imp in IMPORTS:
        src, dst = _unit(imp.source), _unit(imp.target)
        if src == dst:
            continue
        graph.add_edge(src, dst)
        if LAYER[src] <= LAYER[dst]:
            how = "a peer" if LAYER[src] == LAYER[dst] else "a higher layer"
            bad.append(f"{imp.where()}: {src} may not import {dst} ({how})")
    assert not bad, "\n".join(bad)
    assert nx.is_directed_acyclic_graph(graph)


def test_grammar_and_tools_know_nothing_above_them() -> None:
    for imp in IMPORTS:
        if _unit(imp.source) == "tools":
            assert _unit(imp.target) in {"tools", "exceptions", "_text", "_logging"}, imp.where()
        if _unit(imp.source) == "grammar":
            assert _unit(imp.target) in {"grammar", "tools", "exceptions", "_text", "_logging"}, imp.where()


#: Cycles known today, each to be broken by the change named; the test fails once one is gone,
#: so the entry goes with it.
KNOWN_CYCLES: dict[frozenset[str], str] = {}


def _cycles() -> list[list[str]]:
    graph = nx.DiGraph()
    graph.add_nodes_from(MODULES)
    for src, dst, _ in _edges():
        if src != dst:
            graph.add_edge(src, dst)
    return [[*c, c[0]] for c in nx.simple_cycles(graph)]


def test_no_import_cycles() -> None:
    cycles = _cycles()
    found = {frozenset(c) for c in cycles}
    new = [" -> ".join(c) for c in cycles if frozenset(c) not in KNOWN_CYCLES]
    assert not new, "import cycles:\n" + "\n".join(new)
    gone = [why for cycle, why in KNOWN_CYCLES.items() if cycle not in found]
    assert not gone, f"these cycles are broken now; remove them from KNOWN_CYCLES: {gone}"
