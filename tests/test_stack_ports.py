"""A stack of its own takes ports no other process of it takes: every service's and the
broker's are distinct (they were chosen one at a time, and a broker and a service were once
given the same port, so `bo run --isolated` failed to start)."""

from __future__ import annotations

import socket

from bo_tools.stack import SERVICES, free_ports, isolated_config


def test_free_ports_are_distinct_free_and_not_among_those_given() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        busy = int(held.getsockname()[1])
        ports = free_ports(200, besides=[busy])
    assert len(set(ports)) == 200
    assert busy not in ports
    for port in ports[:20]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_an_isolated_stack_gives_each_process_its_own_port() -> None:
    for n in range(50):
        config = isolated_config(f"ports_{n}")
        ports = [config.ports[s.name] for s in SERVICES] + [config.broker_port]
        assert len(set(ports)) == len(SERVICES) + 1
