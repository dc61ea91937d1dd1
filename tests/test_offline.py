"""Tests run offline: the session-wide guard refuses anything beyond loopback."""

from __future__ import annotations

import socket

import pytest

from tests.support.network import NetworkDisabled, refuse_non_loopback


def test_name_lookups_beyond_this_machine_fail() -> None:
    with pytest.raises(NetworkDisabled):
        socket.getaddrinfo("api.openai.com", 443)
    assert socket.getaddrinfo("localhost", 80)


def test_connections_beyond_loopback_are_refused_before_any_packet() -> None:
    with pytest.raises(NetworkDisabled):
        refuse_non_loopback(("192.0.2.10", 443))  # checked, never dialled
    refuse_non_loopback(("127.0.0.1", 5432))
    refuse_non_loopback(("::1", 6379))
    refuse_non_loopback("/var/run/postgresql/.s.PGSQL.5432")
