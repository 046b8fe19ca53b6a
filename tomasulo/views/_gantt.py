"""Gantt charts of runs: one bar per task, from when it started to when it ended.

``draw_gantt(result, "out/run.png")`` draws with matplotlib (PNG, SVG or PDF by the suffix);
``draw_gantt(result, "out/run.html")`` writes a self-contained HTML page (inline SVG, no scripts,
nothing fetched). The benchmarks reuse it.

>>> draw_gantt(result, "out/run.png", title="research")  # doctest: +SKIP
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..exceptions import ConfigError
from ..runtime import RunResult, TaskRecord

__all__ = ["GANTT_COLORS", "GanttBar", "bars_from", "draw_gantt"]

#: Bar colours by task status (``waiting`` is the time between ready and started).
GANTT_COLORS = {
    "succeeded": "#43a047",
    "failed": "#e53935",
    "skipped": "#9e9e9e",
    "cancelled": "#fb8c00",
    "waiting": "#bbdefb",
}


@dataclass(frozen=True, slots=True)
class GanttBar:
    """One row of a chart: ``label`` ran from ``start`` to ``end`` (seconds) and ended ``status``.

    ``ready`` (if earlier than ``start``) draws the wait for a free slot; ``group`` names the run or
    step the task belongs to.
    """

    label: str
    start: float
    end: float
    status: str = "succeeded"
    ready: float | None = None
    group: str = ""
    note: str = ""


def bars_from(
    source: RunResult | Iterable[TaskRecord | GanttBar], *, offset: float = 0.0, group: str = ""
) -> list[GanttBar]:
    """The bars of a run's tasks (shifted by ``offset`` seconds), or the bars given."""
    items: Iterable[TaskRecord | GanttBar] = source.tasks if isinstance(source, RunResult) else source
    bars: list[GanttBar] = []
    for item in items:
        if isinstance(item, GanttBar):
            bars.append(item)
            continue
        end = item.finished if item.finished is not None else item.started
        if end is None:
            continue  # never started nor ended: nothing to draw
        start = item.started if item.started is not None else end
        tries = f" ({item.attempts} attempts)" if item.attempts > 1 else ""
        prefix = f"{group} " if group else ""
        bars.append(
            GanttBar(
                label=f"{prefix}{item.id}. {item.tool}{tries}",
                start=start + offset,
                end=end + offset,
                status=item.status,
                ready=None if item.ready is None else item.ready + offset,
                group=group,
                note=item.message or "",
            )
        )
    return bars


def draw_gantt(
    source: RunResult | Iterable[TaskRecord | GanttBar],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> Path:
    """Draw the timeline of ``source`` into ``path`` (``.png``, ``.svg``, ``.pdf`` or ``.html``).

    Returns the path written. Its folder is created if needed.

    Raises:
        ConfigError: an unknown file type, nothing to draw, or matplotlib missing for an image.
    """
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in (".png", ".svg", ".pdf", ".html", ".htm"):
        raise ConfigError(
            f"cannot draw a Gantt chart as {target.name!r}: use a .png, .svg, .pdf or .html file"
        )
    bars = sorted(bars_from(source), key=lambda b: (b.start, b.label))
    if not bars:
        raise ConfigError("the run has no tasks that started or ended: there is no timeline to draw")
    target.parent.mkdir(parents=True, exist_ok=True)
    heading = title or "tomasulo run"
    if suffix in (".html", ".htm"):
        target.write_text(_html(bars, heading), encoding="utf-8")
    else:
        _image(bars, heading, target)
    return target


def _image(bars: list[GanttBar], title: str, target: Path) -> None:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
    except ImportError:  # pragma: no cover - matplotlib is in the `plot` extra
        raise ConfigError(
            "drawing a PNG needs matplotlib: pip install 'tomasulo[plot]' (or write .html)"
        ) from None
    fig = Figure(figsize=(9, 1.6 + 0.32 * len(bars)), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    span = max(b.end for b in bars) or 1.0
    tick = span / 150  # a zero-length bar (a skipped task) still shows as a sliver
    for row, bar in enumerate(bars):
        if bar.ready is not None and bar.ready < bar.start:
            ax.barh(row, bar.start - bar.ready, left=bar.ready, color=GANTT_COLORS["waiting"], height=0.6)
        width = max(bar.end - bar.start, tick)
        color = GANTT_COLORS.get(bar.status, "#607d8b")
        ax.barh(row, width, left=bar.start, color=color, height=0.6)
        if bar.status in ("failed", "skipped", "cancelled"):
            ax.text(bar.start + width + tick * 2, row, bar.status, va="center", fontsize=7, color=color)
    ax.set_yticks(range(len(bars)), [b.label for b in bars], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds from the start")
    ax.set_xlim(0, span * 1.12)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    shown = ["waiting", *dict.fromkeys(b.status for b in bars)]
    fig.legend(
        handles=[Patch(color=GANTT_COLORS.get(s, "#607d8b"), label=s) for s in shown],
        loc="outside lower center",
        ncol=len(shown),
        fontsize=8,
        frameon=False,
    )
    fig.savefig(target, dpi=110)


def _nice_step(span: float) -> float:
    raw = span / 8
    power = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    for m in (1, 2, 5, 10):
        if m * power >= raw:
            return m * power
    return 10 * power  # pragma: no cover


def _html(bars: list[GanttBar], title: str) -> str:
    left, width, row_h, top = 260, 640, 24, 30
    span = max(b.end for b in bars) or 1.0
    scale = width / (span * 1.05)
    height = top + row_h * len(bars) + 30
    parts: list[str] = []
    step = _nice_step(span)
    t = 0.0
    while t <= span * 1.05:
        x = left + t * scale
        parts.append(
            f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{height - 24}" class="grid"/>'
            f'<text x="{x:.1f}" y="{top - 10}" class="tick">{t:g}s</text>'
        )
        t = round(t + step, 10)
    for row, bar in enumerate(bars):
        y = top + row * row_h
        label = html.escape(bar.label)
        parts.append(f'<text x="{left - 8}" y="{y + 16}" class="label">{label}</text>')
        if bar.ready is not None and bar.ready < bar.start:
            parts.append(
                f'<rect x="{left + bar.ready * scale:.1f}" y="{y + 4}" '
                f'width="{(bar.start - bar.ready) * scale:.1f}" height="16" '
                f'fill="{GANTT_COLORS["waiting"]}"/>'
            )
        w = max((bar.end - bar.start) * scale, 2.0)
        color = GANTT_COLORS.get(bar.status, "#607d8b")
        tip = f"{bar.label}: {bar.status}, {bar.start:.3f}s to {bar.end:.3f}s"
        if bar.note:
            tip += f" ({bar.note})"
        parts.append(
            f'<rect x="{left + bar.start * scale:.1f}" y="{y + 4}" width="{w:.1f}" height="16" '
            f'fill="{color}"><title>{html.escape(tip)}</title></rect>'
        )
        if bar.status != "succeeded":
            parts.append(
                f'<text x="{left + bar.start * scale + w + 4:.1f}" y="{y + 16}" class="state">'
                f"{html.escape(bar.status)}</text>"
            )
    legend = " ".join(
        f'<span class="key"><i style="background:{c}"></i>{html.escape(s)}</span>'
        for s, c in GANTT_COLORS.items()
    )
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 80}" height="{height}" '
        f'role="img" aria-label="Gantt chart">{"".join(parts)}</svg>'
    )
    rows = "".join(
        f"<tr><td>{html.escape(b.label)}</td><td>{html.escape(b.status)}</td>"
        f"<td>{b.start:.3f}</td><td>{b.end:.3f}</td><td>{html.escape(b.note)}</td></tr>"
        for b in bars
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 2em; color: #222; }}
.label {{ font-size: 12px; text-anchor: end; }} .tick {{ font-size: 11px; text-anchor: middle; fill: #666; }}
.state {{ font-size: 11px; fill: #555; }} .grid {{ stroke: #eee; }}
.key {{ margin-right: 1em; }}
.key i {{ display: inline-block; width: 12px; height: 12px; margin-right: 4px; }}
table {{ border-collapse: collapse; margin-top: 1em; font-size: 12px; }}
td, th {{ border: 1px solid #ddd; padding: 2px 8px; text-align: left; }}
</style></head>
<body><h1>{html.escape(title)}</h1>
<p>{legend}</p>
{svg}
<table><tr><th>task</th><th>status</th><th>start (s)</th><th>end (s)</th><th>note</th></tr>{rows}</table>
</body></html>
"""
