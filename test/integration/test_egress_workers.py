"""SPEC section 9, policy changes with two workers: each worker has its own
policy cache and its own open connections, so a `PUBLISH <prefix>invalidate
egress:<address>` must reach both. The namespace world of egress_world.py
with "workers": 2 and a cache TTL of a minute, so that nothing but the
purge can make a worker see the new record within the test's bound.

Needs root, ip, nft, dnsmasq, curl, openssl and nc."""

import json
import select
import time

import pytest

from harness import value, wait_until
from egress_world import BANNER, SBX_IP, hold, needs_world, run_world

pytestmark = needs_world

TTL_MS = 60000
# New connections and closes must follow the purge within this (the
# re-check runs every second, but from a cache the TTL keeps fresh).
BOUND_S = 2.0


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    yield from run_world(tmp_path_factory, "egress_workers",
                         {"workers": 2, "cache": {"ttl_ms": TTL_MS}}, tag="egw")


def read_line(p, deadline):
    """The holder's next line, or None at the deadline."""
    if select.select([p.stdout], [], [], max(0.0, deadline - time.monotonic()))[0]:
        line = p.stdout.readline()
        return json.loads(line) if line else None
    return None


def test_purge_reaches_every_worker(world):
    world.set_policy({}, sources=(SBX_IP,))
    holders = []
    try:
        # Open connections until both workers hold one (SO_REUSEPORT
        # spreads them by hash): then each worker has the policy cached.
        for _ in range(32):
            holders.append(hold(world, BANNER, "2222"))
            assert read_line(holders[-1], time.monotonic() + 10) == \
                {"opened": "BANNER %s" % BANNER}
            if len(holders) >= 4 and \
                    value(world.metrics(), "edgeproxy_egress_policy_cache_entries") == 2:
                break
        assert value(world.metrics(), "edgeproxy_egress_policy_cache_entries") == 2, \
            "32 connections all went to one worker"
        assert value(world.metrics(), "edgeproxy_egress_connections") == len(holders)
        revoked = value(world.metrics(), "edgeproxy_egress_revoked_total")

        # Tightened: the record, the PUBLISH, the kernel rules.
        world.set_policy({"denyOut": [BANNER]}, sources=(SBX_IP,))
        t0 = time.monotonic()
        deadline = t0 + BOUND_S
        ends = [read_line(p, deadline) for p in holders]
        still_open = sum(e is None for e in ends)
        assert still_open == 0, "%d of %d connections still open %.1f s after the purge" % (
            still_open, len(holders), BOUND_S)
        assert all(e["end"] == "reset" for e in ends), ends
        assert value(world.metrics(), "edgeproxy_egress_revoked_total") == revoked + len(holders)
        wait_until(lambda: value(world.metrics(), "edgeproxy_egress_connections") == 0,
                   timeout=BOUND_S, what="no egress connection left open")

        # New connections, spread over both workers: all refused.
        ends = [world.client("tcp", BANNER, "2222", "hi\n")["end"] for _ in range(16)]
        assert ends == ["reset"] * 16, ends
    finally:
        for p in holders:
            p.kill()
            p.wait()
