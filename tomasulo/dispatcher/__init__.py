"""tomasulo.dispatcher (see DESIGN.md)."""

__all__: list[str] = []
