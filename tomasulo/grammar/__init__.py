"""The plan language: AST, parsers (text and JSON dialects, whole or streaming) and grammars."""

from ._ast import JOIN, Plan, Ref, Task, Template, Value, iter_refs, stringify, value_to_text
from ._build import PlanGrammar, build_grammar, joiner_schema
from ._json_dialect import JsonPlanStream, aiter_json_tasks, parse_json_plan
from ._masking import Generation, TokenMasker, constrained_generate, load_tokenizer
from ._parser import END_OF_PLAN, parse_path
from ._stream import PlanStream, aiter_tasks, parse_plan

__all__ = [
    "END_OF_PLAN",
    "JOIN",
    "Generation",
    "JsonPlanStream",
    "Plan",
    "PlanGrammar",
    "PlanStream",
    "Ref",
    "Task",
    "Template",
    "TokenMasker",
    "Value",
    "aiter_json_tasks",
    "aiter_tasks",
    "build_grammar",
    "constrained_generate",
    "iter_refs",
    "joiner_schema",
    "load_tokenizer",
    "parse_json_plan",
    "parse_path",
    "parse_plan",
    "stringify",
    "value_to_text",
]
