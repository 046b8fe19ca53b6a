"""Server-Sent Events, read line by line (the WHATWG rules the service's streams need).

>>> parser = SSEParser()
>>> [parser.feed(line) for line in ["id: 3", "event: task_ready", 'data: {"seq": 3}', ""]][-1]
ServerSentEvent(id='3', event='task_ready', data='{"seq": 3}')

Comment lines (``: ping``, the service's heartbeats) and fields it does not know are skipped;
several ``data:`` lines of one event are joined with newlines; an event with no data is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SSEParser", "ServerSentEvent"]


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One event of a stream: its ``id:`` (None when it had none), ``event:`` and ``data:``."""

    id: str | None
    event: str
    data: str


class SSEParser:
    """Turns the lines of a stream (without their line ends) into events."""

    def __init__(self) -> None:
        self._id: str | None = None
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> ServerSentEvent | None:
        """Take one line; the event it completes (a blank line ends one), else None."""
        if not line:
            if not self._data:
                self._id, self._event = None, ""
                return None
            done = ServerSentEvent(self._id, self._event or "message", "\n".join(self._data))
            self._id, self._event, self._data = None, "", []
            return done
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        return None
