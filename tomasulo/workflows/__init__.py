"""Workflow files: a YAML schema, a loader with clear errors, step-by-step runs and batch mode.

>>> from tomasulo.workflows import load_workflow
>>> wf = load_workflow("examples/research.yaml")  # doctest: +SKIP

Plans read inputs and earlier steps' outputs through the ``input`` tool
(``1. input("country")``), which hands over the value itself; values are never spliced into a
plan's text.
"""

from ._batch import BatchLine, BatchReport, check_batch_paths, read_batch_inputs, run_batch
from ._gantt import GANTT_COLORS, GanttBar, bars_from, draw_gantt
from ._json import dumps_json, jsonable
from ._loader import LoadedWorkflow, OutputRef, load_workflow, loads_workflow
from ._model import (
    HttpToolSpec,
    InputSpec,
    ModelConfig,
    PolicySpec,
    RunLimits,
    Step,
    ToolSpec,
    Workflow,
)
from ._orchestrated import ENV_VARS, ModelSettings, OrchestratorRunner, StepRun, resolve_model
from ._report import args_json, call_text, report_lines, task_json
from ._run import StepResult, StepRunner, WorkflowResult, run_workflow
from ._schema import SCHEMA_PATH, workflow_json_schema
from ._tools import INPUT_TOOL, input_tool
from ._view import BatchView, LiveView, TaskBoard, TaskRow

__all__ = [
    "ENV_VARS",
    "GANTT_COLORS",
    "INPUT_TOOL",
    "SCHEMA_PATH",
    "BatchLine",
    "BatchReport",
    "BatchView",
    "GanttBar",
    "HttpToolSpec",
    "InputSpec",
    "LiveView",
    "LoadedWorkflow",
    "ModelConfig",
    "ModelSettings",
    "OrchestratorRunner",
    "OutputRef",
    "PolicySpec",
    "RunLimits",
    "Step",
    "StepResult",
    "StepRun",
    "StepRunner",
    "TaskBoard",
    "TaskRow",
    "ToolSpec",
    "Workflow",
    "WorkflowResult",
    "args_json",
    "bars_from",
    "call_text",
    "check_batch_paths",
    "draw_gantt",
    "dumps_json",
    "input_tool",
    "jsonable",
    "load_workflow",
    "loads_workflow",
    "read_batch_inputs",
    "report_lines",
    "resolve_model",
    "run_batch",
    "run_workflow",
    "task_json",
    "workflow_json_schema",
]
