"""Keeping tests offline: refuse every connection or name lookup beyond this machine."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest


class NetworkDisabled(OSError):
    """A test tried to reach beyond this machine (DESIGN section 9: tests run offline)."""


def is_loopback(host: object) -> bool:
    """Whether ``host`` names this machine."""
    if host in (None, "", "localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%", 1)[0]).is_loopback
    except ValueError:
        return str(host).endswith(".localhost")


def refuse_non_loopback(address: object) -> None:
    """Raise NetworkDisabled for an address that is not on this machine (Unix sockets pass)."""
    if isinstance(address, tuple) and not is_loopback(address[0]):
        raise NetworkDisabled(f"tests may not reach the network: {address[0]!r}")


class NetworkRefused(OSError):
    """A test tried to reach beyond this machine."""


def install_network_guard(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Refuse every connection or lookup beyond loopback; returns the refused addresses."""
    refused: list[object] = []

    def check(address: object) -> None:
        # Tuples are IP addresses; strings are Unix sockets, which stay on this machine.
        if isinstance(address, tuple) and not is_loopback(address[0]):
            refused.append(address)
            raise NetworkRefused(f"tests may not reach the network: {address[0]!r}")

    def check_host(host: object) -> None:
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None:
            check((name, 0))

    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guarded_connect(self: socket.socket, address: Any) -> None:
        check(address)
        return connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: Any) -> int:
        check(address)
        return connect_ex(self, address)

    loop_class = asyncio.base_events.BaseEventLoop
    # Typed loosely: the stubs' overloads do not fit a pass-through wrapper.
    create_connection: Any = loop_class.create_connection
    getaddrinfo: Any = loop_class.getaddrinfo
    sock_connect: Any = loop_class.sock_connect

    async def guarded_create_connection(
        self: asyncio.AbstractEventLoop, factory: Any, host: Any = None, *args: Any, **kw: Any
    ) -> Any:
        check_host(host)
        return await create_connection(self, factory, host, *args, **kw)

    async def guarded_getaddrinfo(
        self: asyncio.AbstractEventLoop, host: Any, *args: Any, **kw: Any
    ) -> Any:
        check_host(host)
        return await getaddrinfo(self, host, *args, **kw)

    async def guarded_sock_connect(
        self: asyncio.AbstractEventLoop, sock: socket.socket, address: Any
    ) -> None:
        check(address)
        return await sock_connect(self, sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    monkeypatch.setattr(loop_class, "create_connection", guarded_create_connection)
    monkeypatch.setattr(loop_class, "getaddrinfo", guarded_getaddrinfo)
    monkeypatch.setattr(loop_class, "sock_connect", guarded_sock_connect)
    return refused


@contextlib.contextmanager
def sockets_kept_on_loopback() -> Iterator[None]:
    """Until exit, connections and name lookups beyond loopback raise NetworkDisabled."""
    connect, connect_ex, getaddrinfo = (
        socket.socket.connect,
        socket.socket.connect_ex,
        socket.getaddrinfo,
    )

    def guarded_connect(self: socket.socket, address: Any) -> None:
        refuse_non_loopback(address)
        return connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: Any) -> int:
        refuse_non_loopback(address)
        return connect_ex(self, address)

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if not is_loopback(name):
            raise NetworkDisabled(f"tests may not resolve {name!r}")
        return getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = guarded_connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = guarded_getaddrinfo
    try:
        yield
    finally:
        socket.socket.connect = connect  # type: ignore[method-assign]
        socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
        socket.getaddrinfo = getaddrinfo
