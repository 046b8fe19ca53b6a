"""Built-in tools that work offline and safely.

Each tool is made by a factory because most need configuration:

- :func:`math_tool`: arithmetic through a whitelist evaluator (never ``eval``), bounded.
- :func:`sql_tool`: read-only SELECT queries on a SQLite file (or a ``.sql`` script).
- :func:`file_tools` (:func:`read_file_tool`, :func:`grep_tool`): confined to a root directory.
- :func:`http_get_tool`: GET on allowlisted hosts; private addresses refused unless allowed.
- :func:`sleep_tool` and :func:`echo_tool`: for tests and demos.

>>> from tomasulo.tools.builtins import builtin_toolset
>>> builtin_toolset(db="examples/facts.sql").names  # doctest: +SKIP
('math', 'echo', 'sleep', 'sql')
"""

from ._files import FileAccess, file_tools, grep_tool, read_file_tool
from ._http import check_address, http_get_tool
from ._math import FUNCTIONS, MathLimits, evaluate, math_tool
from ._misc import echo_tool, sleep_tool
from ._registry import BUILTINS, PATH_OPTIONS, builtin_options, builtin_tools, builtin_toolset
from ._sql import database_from_script, sql_tool

__all__ = [
    "BUILTINS",
    "FUNCTIONS",
    "PATH_OPTIONS",
    "FileAccess",
    "MathLimits",
    "builtin_options",
    "builtin_tools",
    "builtin_toolset",
    "check_address",
    "database_from_script",
    "echo_tool",
    "evaluate",
    "file_tools",
    "grep_tool",
    "http_get_tool",
    "math_tool",
    "read_file_tool",
    "sleep_tool",
    "sql_tool",
]
