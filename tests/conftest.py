"""Shared test set-up: anyio on asyncio, and no network beyond loopback."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _check_address(address: Any) -> None:
    if not isinstance(address, tuple) or not address:
        return  # unix sockets and the like
    host = address[0]
    if host in ("localhost", ""):
        return
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        raise ConnectionRefusedError(f"tests may not resolve or reach {host!r}") from None
    if not ip.is_loopback:
        raise ConnectionRefusedError(f"tests may only reach loopback, not {host}")


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _check_address(address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _check_address(address)
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True, scope="session")
def _loopback_only() -> Iterator[None]:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
