"""The built-ins by name, and builtin_toolset."""

from __future__ import annotations

from pathlib import Path

import pytest

import tomasulo.tools.builtins as builtins
from tomasulo.exceptions import ConfigError
from tomasulo.tools.builtins import builtin_options, builtin_tools, builtin_toolset


def test_public_names() -> None:
    assert set(builtins.__all__) == {
        "BUILTINS",
        "FUNCTIONS",
        "FileAccess",
        "MathLimits",
        "PATH_OPTIONS",
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
    }
    for name in builtins.__all__:
        assert getattr(builtins, name).__doc__, name


def test_toolset_grows_with_options(tmp_path: Path) -> None:
    assert builtin_toolset().names == ("math", "echo", "sleep")
    script = tmp_path / "db.sql"
    script.write_text("CREATE TABLE t(x);")
    full = builtin_toolset(root=tmp_path, db=script, allow_hosts=["example.com"])
    assert full.names == ("math", "echo", "sleep", "sql", "read_file", "grep", "http_get")
    assert builtin_toolset(include=["math"]).names == ("math",)


def test_builtin_tools_checks_options(tmp_path: Path) -> None:
    assert [t.name for t in builtin_tools("files", root=tmp_path)] == ["read_file", "grep"]
    assert builtin_options("sql") == {"db": True, "max_rows": False, "timeout": False}
    with pytest.raises(ConfigError, match="no built-in tool 'maths'"):
        builtin_tools("maths")
    with pytest.raises(ConfigError, match="has no option 'rootdir'"):
        builtin_tools("grep", rootdir=tmp_path)
    with pytest.raises(ConfigError, match="needs the option 'root'"):
        builtin_tools("grep")
