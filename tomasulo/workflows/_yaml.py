"""YAML with positions: parse errors with line and column, and the position of any value by path.

Aliases are allowed but bounded while the document is composed, before anything is built from
it: an alias naming an anchor that is still open (a structure that contains itself) is refused
at once, and so is a document whose values, aliases expanded, number more than
:data:`MAX_NODES` (an "alias bomb" such as "billion laughs"), or that nests deeper than
:data:`MAX_DEPTH`. Each refusal names the line and column of the alias or value at fault.

A value PyYAML cannot build (an integer of more digits than Python reads from text, 4300 by
default; a date that does not exist) is an error at its line and column, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import yaml

from ..exceptions import WorkflowError

__all__ = ["MAX_DEPTH", "MAX_NODES", "YamlDocument", "decode_utf8"]

#: The most values a workflow file may hold, each alias counted as the values it stands for.
MAX_NODES = 100_000
#: The deepest nesting of lists and mappings a workflow file may have.
MAX_DEPTH = 64


def decode_utf8(data: bytes, *, path: str | None = None, what: str = "the file") -> str:
    """``data`` as UTF-8 text (a leading byte-order mark is dropped).

    Raises:
        WorkflowError: naming ``path``, the byte offset, line and column of the first byte that
            is not UTF-8.
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        start = exc.start
        line = data.count(b"\n", 0, start) + 1
        column = start - (data.rfind(b"\n", 0, start) + 1) + 1
        raise WorkflowError(
            f"{what} is not UTF-8 text: byte 0x{data[start]:02x} at offset {start} "
            f"(line {line}, column {column}) cannot be decoded; save it as UTF-8",
            path=path,
        ) from None


class _Refused(Exception):
    def __init__(self, message: str, mark: Any) -> None:
        self.message = message
        self.mark = mark
        super().__init__(message)


class _BoundedLoader(yaml.SafeLoader):
    """A safe loader whose composer counts values as aliases expand them and refuses cycles."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._open: set[str] = set()
        self._sizes: dict[int, int] = {}
        self._count = 0
        self._depth = 0

    def _size(self, node: yaml.Node) -> int:
        known = self._sizes.get(id(node))
        if known is not None:
            return known
        size = 1
        if isinstance(node, yaml.SequenceNode):
            size += sum(self._size(item) for item in node.value)
        elif isinstance(node, yaml.MappingNode):
            size += sum(self._size(k) + self._size(v) for k, v in node.value)
        self._sizes[id(node)] = size
        return size

    def _add(self, count: int, mark: Any, what: str) -> None:
        self._count += count
        if self._count > MAX_NODES:
            raise _Refused(
                f"the document holds more than {MAX_NODES} values once its aliases are expanded "
                f"({what}); an alias bomb? Write the values out, or use fewer aliases",
                mark,
            )

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event: Any
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            anchor = event.anchor
            if anchor in self._open:
                raise _Refused(
                    f"the alias *{anchor} is inside its own anchor &{anchor}: a value cannot contain itself",
                    event.start_mark,
                )
            target = self.anchors.get(anchor)
            if target is not None:
                self._add(self._size(target), event.start_mark, f"at the alias *{anchor}")
            node: yaml.Node | None = super().compose_node(parent, index)
            return node
        event = self.peek_event()  # type: ignore[no-untyped-call]
        anchor = getattr(event, "anchor", None)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(f"the document nests deeper than {MAX_DEPTH} levels", event.start_mark)
        self._add(1, event.start_mark, "here")
        if anchor is not None:
            self._open.add(anchor)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            if anchor is not None:
                self._open.discard(anchor)
        return node

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except ValueError as exc:
            raise _Refused(_unbuildable(node, exc), node.start_mark) from None


def _unbuildable(node: yaml.Node, exc: ValueError) -> str:
    """Why the value at ``node`` cannot be built, and what to do."""
    if node.tag == "tag:yaml.org,2002:int" and isinstance(node.value, str):
        digits = sum(c.isdigit() for c in node.value)
        return (
            f"an integer of {digits} digits is too long to read (at most "
            f"{sys.get_int_max_str_digits()} digits); quote it to make it a string"
        )
    kind = node.tag.rsplit(":", 1)[-1] if isinstance(node.tag, str) else "value"
    return f"this {kind} cannot be read: {exc}"


class YamlDocument:
    """A parsed YAML document that remembers where each value came from.

    Raises :class:`WorkflowError` with line and column for syntax errors and duplicate keys.
    """

    def __init__(self, text: str, *, path: str | None = None) -> None:
        self.text = text
        self.path = path
        self.lines = text.splitlines()
        loader = _BoundedLoader(text)
        try:
            self.node: yaml.Node | None = loader.get_single_node()
            if self.node is not None:
                self._check_duplicates(self.node)
            try:
                self.data: Any = loader.construct_document(self.node) if self.node is not None else None
            except ValueError as exc:  # a constructor failed outside any one node
                raise _Refused(f"a value cannot be read: {exc}", None) from None
        except _Refused as exc:
            mark = exc.mark
            raise WorkflowError(
                f"YAML refused: {exc.message}",
                path=path,
                line=mark.line + 1 if mark else None,
                column=mark.column + 1 if mark else None,
            ) from None
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
        finally:
            loader.dispose()

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
