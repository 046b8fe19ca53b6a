"""A "server" that reads stdin and never answers: initialize must time out."""

import sys

for _ in sys.stdin:
    pass
