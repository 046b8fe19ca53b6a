"""The basic server, but it ignores SIGTERM and will not exit when its stdin closes."""

import signal
import time

from basic import server

signal.signal(signal.SIGTERM, signal.SIG_IGN)
server.run("stdio")
time.sleep(3600)
