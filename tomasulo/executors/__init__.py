"""tomasulo.executors (see DESIGN.md)."""

__all__: list[str] = []
