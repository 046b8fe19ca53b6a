"""The planner side: LLM backends and dialects, prompts, plan streaming, the joiner.

``Model`` is what the planner and joiner need of a model; ``LLM`` (one ``Model``) talks to any
OpenAI-compatible server; ``GrammarSpec`` carries a plan grammar in the forms
the dialects need; ``Planner`` streams plans task by task; ``Joiner`` finishes or asks for a
replan; ``OutputSpec`` types an answer (``output_type=``) and ``Turn`` / ``as_history`` hold a
conversation's earlier turns; ``Usage`` and ``Prices`` meter tokens and cost; ``resolve_model``
reads LLM settings from flags, the environment and configuration files.
"""

from ._conversation import Turn, as_history
from ._dialects import (
    DEFAULT_DIALECT,
    DIALECTS,
    Dialect,
    GrammarForm,
    GrammarSpec,
    OutputFormat,
    RequestShape,
    grammar_form,
    shape_request,
)
from ._llm import DEFAULT_RETRY, DEFAULT_TIMEOUTS, LLM, FunctionCall, Message, RetryPolicy, Timeouts
from ._local import LocalModel, chat_text
from ._model import Model, ToolCallingModel
from ._output import OutputSpec
from ._planner import (
    JOINER_MAX_TOKENS,
    PLAN_TOKENS_PER_TASK,
    JoinDecision,
    Joiner,
    Planner,
    PlanRound,
    parse_decision,
)
from ._prompts import (
    PlanContext,
    TaskReport,
    joiner_messages,
    planner_messages,
    render_results,
    tool_catalog,
    tool_specs,
    turn_messages,
)
from ._settings import ENV_VARS, ModelDefaults, ModelSettings, resolve_model
from ._usage import Prices, Usage, estimate_tokens

__all__ = [
    "DEFAULT_DIALECT",
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUTS",
    "DIALECTS",
    "ENV_VARS",
    "JOINER_MAX_TOKENS",
    "LLM",
    "PLAN_TOKENS_PER_TASK",
    "Dialect",
    "FunctionCall",
    "GrammarForm",
    "GrammarSpec",
    "JoinDecision",
    "Joiner",
    "LocalModel",
    "Message",
    "Model",
    "ModelDefaults",
    "ModelSettings",
    "OutputFormat",
    "OutputSpec",
    "PlanContext",
    "PlanRound",
    "Planner",
    "Prices",
    "RequestShape",
    "RetryPolicy",
    "TaskReport",
    "Timeouts",
    "ToolCallingModel",
    "Turn",
    "Usage",
    "as_history",
    "chat_text",
    "estimate_tokens",
    "grammar_form",
    "joiner_messages",
    "parse_decision",
    "planner_messages",
    "render_results",
    "resolve_model",
    "shape_request",
    "tool_catalog",
    "tool_specs",
    "turn_messages",
]
