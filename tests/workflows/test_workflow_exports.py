"""The public face of tomasulo.workflows: every listed name exists and is documented."""

from __future__ import annotations

import tomasulo.workflows as workflows


def test_public_names_exist_are_listed_and_documented() -> None:
    exported = workflows.__all__
    assert len(exported) == len(set(exported))
    for name in exported:
        obj = getattr(workflows, name)
        if isinstance(obj, type) or callable(obj):
            assert obj.__doc__, name
    public = {n for n in vars(workflows) if not n.startswith("_") and n != "annotations"}
    modules = {n for n in public if type(getattr(workflows, n)).__name__ == "module"}
    assert public - modules <= set(exported)
