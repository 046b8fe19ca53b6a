"""Workflow files: a YAML schema, a loader with clear errors, step-by-step runs and batch mode.

Live views, Gantt charts and reports of runs are in :mod:`tomasulo.views`; LLM settings from
flags and the environment in :func:`tomasulo.planner.resolve_model`.

>>> from tomasulo.workflows import load_workflow
>>> wf = load_workflow("examples/research.yaml")  # doctest: +SKIP

Plans read inputs and earlier steps' outputs through the ``input`` tool
(``1. input("country")``), which hands over the value itself; values are never spliced into a
plan's text.
"""

from ._batch import BatchLine, BatchReport, check_batch_paths, read_batch_inputs, run_batch
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
from ._orchestrated import OrchestratorRunner, StepRun
from ._run import StepResult, StepRunner, WorkflowResult, run_workflow
from ._schema import SCHEMA_PATH, workflow_json_schema
from ._tools import INPUT_TOOL, input_tool, tool_source
from ._validation import validation_error
from ._yaml import YamlDocument, decode_utf8

__all__ = [
    "INPUT_TOOL",
    "SCHEMA_PATH",
    "BatchLine",
    "BatchReport",
    "HttpToolSpec",
    "InputSpec",
    "LoadedWorkflow",
    "ModelConfig",
    "OrchestratorRunner",
    "OutputRef",
    "PolicySpec",
    "RunLimits",
    "Step",
    "StepResult",
    "StepRun",
    "StepRunner",
    "ToolSpec",
    "Workflow",
    "WorkflowResult",
    "YamlDocument",
    "check_batch_paths",
    "decode_utf8",
    "input_tool",
    "load_workflow",
    "loads_workflow",
    "read_batch_inputs",
    "run_batch",
    "run_workflow",
    "tool_source",
    "validation_error",
    "workflow_json_schema",
]
