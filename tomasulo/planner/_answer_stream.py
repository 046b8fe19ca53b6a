"""The joiner's answer text read out of its JSON decision while the decision streams.

The joiner answers ``{"thought": "...", "action": "finish", "answer": "..."}``. To show the
answer's first words as soon as the model writes them, :class:`AnswerTextStream` takes the reply
in pieces and hands back, each time, the newly decoded part of the ``"answer"`` string.
"""

from __future__ import annotations

import json
import re
from json.decoder import scanstring  # type: ignore[attr-defined]

__all__ = ["AnswerTextStream"]

# The answer's key, where its string value starts. A string value holding the same words has
# its quotes escaped (`\"answer\"`), so outside a string only the key itself reads like this.
_ANSWER_KEY = re.compile(r'"answer"\s*:\s*"')
# where a piece of string body may stop: its end quote, or an escape (decoded whole)
_STOP = re.compile(r'["\\]')
_ESCAPE = re.compile(r'\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})')
_HIGH_SURROGATE = re.compile(r"\\u[dD][89abAB][0-9a-fA-F]{2}$")
# the start of an escape, cut off where the text ends (empty too)
_PARTIAL_ESCAPE = re.compile(r"(?:\\(?:u[0-9a-fA-F]{0,3})?)?")
# the longest text the key's pattern can need to look back over when it is split across pieces
_KEY_OVERLAP = 64


class AnswerTextStream:
    """Decodes the ``"answer"`` string of a streamed joiner reply, piece by piece.

    >>> s = AnswerTextStream()
    >>> s.feed('{"thought": "ok", "action": "finish", "answer": "Everest is 1.')
    'Everest is 1.'
    >>> s.feed('5 times as tall\\\\')
    '5 times as tall'
    >>> s.feed('n"}'), s.done
    ('\\n', True)

    Each call costs time in proportion to the piece: the text is scanned once. A reply with no
    ``"answer"`` (a replan) gives nothing.
    """

    def __init__(self) -> None:
        self._buf = ""
        self._pos = 0  # where scanning resumes in _buf
        self._in_answer = False
        self.done = False
        #: the answer decoded so far
        self.text = ""

    def feed(self, chunk: str) -> str:
        """Take the next piece of the reply; return the part of the answer it completed."""
        if self.done or not chunk:
            return ""
        self._buf += chunk
        if not self._in_answer:
            m = _ANSWER_KEY.search(self._buf, max(self._pos - _KEY_OVERLAP, 0))
            if m is None:
                self._pos = len(self._buf)
                return ""
            self._in_answer = True
            self._buf = self._buf[m.end() :]  # from here on, the buffer holds only the answer
            self._pos = 0
        out = self._decode()
        self.text += out
        return out

    def _decode(self) -> str:
        buf, pos, pieces = self._buf, self._pos, []
        while True:
            m = _STOP.search(buf, pos)
            if m is None:
                pieces.append(buf[pos:])
                pos = len(buf)
                break
            pieces.append(buf[pos : m.start()])
            if m.group() == '"':
                self.done = True
                pos = m.end()
                break
            esc = _ESCAPE.match(buf, m.start())
            if esc is None:  # cut off mid-escape (or malformed): wait for more text
                pos = m.start()
                break
            end = esc.end()
            if _HIGH_SURROGATE.match(esc.group()):  # an emoji's first half: decode it with its second
                if _PARTIAL_ESCAPE.fullmatch(buf, end):  # which may come in the next piece
                    pos = m.start()
                    break
                low = _ESCAPE.match(buf, end)
                if low is not None:
                    end = low.end()
            pieces.append(_unescape(buf[m.start() : end]))
            pos = end
        # keep only what is not yet decoded
        self._buf, self._pos = buf[pos:], 0
        return "".join(pieces)


def _unescape(escape: str) -> str:
    try:
        text: str = scanstring(escape + '"', 0)[0]
        return text
    except (json.JSONDecodeError, ValueError):
        return ""
