"""YAML with positions: parse errors with line and column, and the position of any value by path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from ..exceptions import WorkflowError

__all__ = ["YamlDocument"]


class YamlDocument:
    """A parsed YAML document that remembers where each value came from.

    Raises :class:`WorkflowError` with line and column for syntax errors and duplicate keys.
    """

    def __init__(self, text: str, *, path: str | None = None) -> None:
        self.text = text
        self.path = path
        self.lines = text.splitlines()
        try:
            self.node = yaml.compose(text, Loader=yaml.SafeLoader)
            self.data: Any = yaml.load(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            what = " ".join(p for p in (exc.context, exc.problem) if p) or "bad YAML"
            raise WorkflowError(
                f"YAML syntax error: {what}",
                path=path,
                line=mark.line + 1 if mark else None,
                column=mark.column + 1 if mark else None,
            ) from None
        except yaml.YAMLError as exc:
            raise WorkflowError(f"YAML error: {exc}", path=path) from None
        if self.node is not None:
            self._check_duplicates(self.node)

    def _check_duplicates(self, node: yaml.Node) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in seen:
                        raise self.error(f"duplicate key {key.value!r}", key)
                    seen.add(key.value)
                self._check_duplicates(value)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                self._check_duplicates(item)

    def node_at(self, loc: Sequence[str | int], *, key: bool = False) -> yaml.Node | None:
        """The node at ``loc`` (mapping keys and list indexes), or the deepest one on the way.

        With ``key=True`` the last step gives the mapping key's node (to point at a bad key).
        """
        node = self.node
        for i, part in enumerate(loc):
            last = i == len(loc) - 1
            if isinstance(node, yaml.MappingNode):
                for k, v in node.value:
                    if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                        node = k if (last and key) else v
                        break
                else:
                    return node
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if not 0 <= part < len(node.value):
                    return node
                node = node.value[part]
            else:
                return node
        return node

    def error(self, message: str, node: yaml.Node | None) -> WorkflowError:
        """A :class:`WorkflowError` pointing at ``node``."""
        if node is None:
            return WorkflowError(message, path=self.path)
        return WorkflowError(
            message, path=self.path, line=node.start_mark.line + 1, column=node.start_mark.column + 1
        )

    def scalar_origin(self, node: yaml.Node | None) -> tuple[int, int, int] | None:
        """Where the text of a scalar starts: (0-based line, 0-based column, block indent).

        For a block scalar (``|`` or ``>``) the text starts on the next line at its indentation;
        ``block indent`` is then that indentation, else -1.
        """
        if not isinstance(node, yaml.ScalarNode):
            return None
        mark = node.start_mark
        if node.style in ("|", ">"):
            line = mark.line + 1
            while line < len(self.lines) and not self.lines[line].strip():
                line += 1
            if line >= len(self.lines):
                return None
            indent = len(self.lines[line]) - len(self.lines[line].lstrip(" "))
            return mark.line + 1, indent, indent
        offset = 1 if node.style in ("'", '"') else 0
        return mark.line, mark.column + offset, -1

    def source_line(self, line: int) -> str:
        """The 1-based line ``line`` of the file ('' past the end)."""
        return self.lines[line - 1] if 0 < line <= len(self.lines) else ""
