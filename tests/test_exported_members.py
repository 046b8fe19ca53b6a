"""The public names of each package are the documented ones, and each really exists."""

from __future__ import annotations

import importlib
import inspect

import pytest

PACKAGES = [
    "tomasulo",
    "tomasulo.client",
    "tomasulo.dispatcher",
    "tomasulo.exceptions",
    "tomasulo.executors",
    "tomasulo.grammar",
    "tomasulo.planner",
    "tomasulo.runtime",
    "tomasulo.service",
    "tomasulo.testing",
    "tomasulo.tools",
    "tomasulo.tools.builtins",
    "tomasulo.views",
    "tomasulo.workflows",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_names_exist_and_are_documented(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert len(exported) == len(set(exported)), "no duplicates in __all__"
    for member in exported:
        obj = getattr(module, member)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__, f"{name}.{member} has no docstring"


@pytest.mark.parametrize("name", PACKAGES)
def test_public_names_are_all_listed(name: str) -> None:
    module = importlib.import_module(name)
    public = {
        n
        for n, obj in vars(module).items()
        if not n.startswith("_")
        and not isinstance(obj, type(importlib))
        and n != "annotations"
        and getattr(obj, "__module__", name).startswith("tomasulo")
    }
    assert public <= set(module.__all__), f"public but not in __all__: {public - set(module.__all__)}"
