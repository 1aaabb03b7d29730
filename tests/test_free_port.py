"""``starter.local.free_port``: the ports the embedded stacks of the tests listen on are picked
below the kernel's ephemeral range, from which every outgoing connection takes its local port (a
CI run lost a dev server to ``bind: address already in use`` on a port picked with port 0), and
one process never hands the same port out twice.

Twin: port 0's pick, the former way, comes from the ephemeral range."""

from __future__ import annotations

import socket
from pathlib import Path

from starter.local import PORT_RANGE, free_port


def ephemeral_range() -> tuple[int, int]:
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return int(low), int(high)


def test_ports_are_below_the_ephemeral_range_distinct_and_free():
    low, _ = ephemeral_range()
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    assert all(PORT_RANGE[0] <= p < PORT_RANGE[1] < low for p in ports), ports
    for p in ports[:5]:  # each can be listened on
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))


def test_twin_port_zero_picks_from_the_ephemeral_range():
    low, high = ephemeral_range()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert low <= port <= high
