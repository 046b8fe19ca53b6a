"""tomasulo.planner (see DESIGN.md)."""

__all__: list[str] = []
