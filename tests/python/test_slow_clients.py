"""1,000 slowloris connections from one address (each sends a byte every 0.5 s and never ends its
headers) must not stall anyone else: a normal request and /health still answer in under a second.
With the default per-address cap most of the flood is refused at once (429) and the normal client
comes from another address; with the cap off, all 1,000 are held by the connection front and the
normal client shares their address. Either way every slow connection is closed at the request
deadline. (Before the connection front, 140 such connections took all 128 HTTP threads and a normal
request waited 9 s.)"""
import resource
import shutil

import pytest

from serve_fixture import Server, requires_server
from slow_clients import SlowClients, normal_latencies, summary

pytestmark = requires_server

FLOOD = 1000
DEADLINE = 8  # --request-timeout-seconds for these servers: long enough to measure under the flood
PER_ADDRESS = 256


@pytest.fixture(autouse=True)
def enough_descriptors():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < FLOOD + 200:
        pytest.skip(f"needs {FLOOD + 200} file descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, FLOOD + 200), hard))


def check_fast(latencies):
    assert all(status == 200 for _, _, status in latencies), latencies
    s = summary(latencies)
    # The goal is under 1 s. A short completion alone takes ~0.1 s on this model; the median keeps
    # one scheduling hiccup of a loaded CI machine from deciding the test, the max bounds the rest.
    assert s["median_s"] < 1.0, latencies
    assert s["max_s"] < 3.0, latencies
    return s


def test_flood_from_one_address_is_capped_and_others_are_served():
    with Server("--request-timeout-seconds", str(DEADLINE), "--max-connections-per-address", str(PER_ADDRESS)) as srv:
        with SlowClients(srv.host, srv.port, FLOOD, source="127.0.0.1") as flood:
            # Exactly the cap is held; every other one was answered 429 and closed at once.
            want = {"open": PER_ADDRESS, "429": FLOOD - PER_ADDRESS, "closed": 0}
            states = flood.wait_states(want, timeout=3)
            print(f"\nconnections: {states}")
            assert states == want
            s = check_fast(normal_latencies(srv.host, srv.port, source="127.0.0.2"))
            print(f"{FLOOD} slow connections, cap {PER_ADDRESS}: normal requests from another address {s}")
            assert flood.closed_by_server(wait=DEADLINE + 3) == FLOOD  # the held ones at the deadline
        assert srv.alive()


def test_flood_without_a_cap_holds_no_thread():
    with Server("--request-timeout-seconds", str(DEADLINE), "--max-connections-per-address", "0") as srv:
        with SlowClients(srv.host, srv.port, FLOOD, source="127.0.0.1") as flood:
            want = {"open": FLOOD, "429": 0, "closed": 0}
            assert flood.wait_states(want, timeout=3) == want
            s = check_fast(normal_latencies(srv.host, srv.port, source="127.0.0.1"))
            print(f"\n{FLOOD} slow connections, no cap: normal requests from the same address {s}")
            assert flood.closed_by_server(wait=DEADLINE + 3) == FLOOD
        # Once they are gone, still serving.
        check_fast(normal_latencies(srv.host, srv.port, rounds=1))


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="prlimit (util-linux) not installed")
def test_connection_cap_stays_below_the_descriptor_limit():
    # 600 descriptors: the server keeps 256 spare and caps connections at 344 rather than let a
    # flood exhaust the table (accept would then fail for everyone).
    with Server("--max-connections-per-address", "0", prefix=["prlimit", "--nofile=600:600", "--"]) as srv:
        assert "at most 344 connections" in srv.output(), srv.output()
        with SlowClients(srv.host, srv.port, 400) as flood:
            want = {"open": 344, "429": 0, "closed": 56}  # the rest: 503 at once
            states = flood.wait_states(want)
            assert states == want
        assert "pausing accepts" not in srv.output()
        check_fast(normal_latencies(srv.host, srv.port, rounds=1))
