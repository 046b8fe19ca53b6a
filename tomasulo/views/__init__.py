"""How runs look to people and to machines: live views, Gantt charts, reports and JSON data.

The CLI, workflows and the service use these; they read :class:`~tomasulo.runtime.RunResult`
values and the events of a run, and know nothing of where the run came from.

>>> from tomasulo.views import call_text
>>> call_text("search", {"query": "Everest"})
'search(query="Everest")'
"""

from ._gantt import GANTT_COLORS, GanttBar, bars_from, draw_gantt
from ._json import MAX_JSON_DEPTH, dumps_json, find_lone_surrogate, jsonable
from ._live import BatchView, LiveView, TaskBoard, TaskRow
from ._report import StepLike, args_json, call_text, report_lines, task_json

__all__ = [
    "GANTT_COLORS",
    "MAX_JSON_DEPTH",
    "BatchView",
    "GanttBar",
    "LiveView",
    "StepLike",
    "TaskBoard",
    "TaskRow",
    "args_json",
    "bars_from",
    "call_text",
    "draw_gantt",
    "dumps_json",
    "find_lone_surrogate",
    "jsonable",
    "report_lines",
    "task_json",
]
