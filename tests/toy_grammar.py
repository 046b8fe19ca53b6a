"""A toy plan grammar in every form a dialect sends (Lark, GBNF, JSON schema), for the LLM tests."""

from __future__ import annotations

from typing import Any

LARK = 'start: task+ "join()"\ntask: ID ". " TOOL "()\\n"\nID: /[1-9][0-9]?/\nTOOL: "search" | "math"'
GBNF = 'root ::= task+ "join()"\ntask ::= [1-9] [0-9]? ". " ("search" | "math") "()\\n"'
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "tasks": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"tool": {"enum": ["search", "math"]}},
                "required": ["tool"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["tasks"],
    "additionalProperties": False,
}
