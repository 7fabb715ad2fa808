"""Three ranks on three "hosts": each in its own network namespace, joined by veth pairs to a
bridge (in a fourth namespace), with 10.77.0.1-3/24 addresses. Every rank reads one cluster file
written here: `jarvis-worker --cluster FILE` in ns1 (rank from --node) and ns2 (rank from Open
MPI's environment, as under mpirun), `jarvis-serve --cluster FILE` (rank 0) in ns0. Links are UCX
over TCP across the veths. The official `openai` client, run inside ns0, gets greedy outputs that
must be token-identical to a one-rank server's (the reference: the forward pass itself is checked
against NumPy elsewhere), with every hop shaped by the file's "links". A rank that disagrees (here on the KV blocks) makes every rank fail at
the rendezvous with one message.

Needs root (CAP_NET_ADMIN) for `ip netns`; without it the test fails and says so. Namespaces get
unique names and are deleted afterwards, also when a test fails."""
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from serve_fixture import BIN, MODEL, Server, requires_server

pytestmark = requires_server

WORKER = BIN.parent / "jarvis-worker"
CLIENT = Path(__file__).with_name("multihost_client.py")
SUBNET = "10.77.0"  # private to the bridge below: no clash with the host's or another run's
KV_BLOCKS = 256     # in the cluster file: every rank reserves these


def ip(*args):
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed ({r.returncode}): {r.stderr.strip()}")


class Hosts:
    """ns[i] is host i at SUBNET.(i+1); hub holds the bridge."""

    def __init__(self, n=3):
        tag = f"jv{os.getpid() % 100000}{uuid.uuid4().hex[:3]}"  # interface names stay <= 15 chars
        self.hub = tag + "h"
        self.ns = [f"{tag}n{i}" for i in range(n)]
        self.created = []
        try:
            ip("netns", "add", self.hub)
        except RuntimeError as e:
            pytest.fail(f"cannot create a network namespace (this test needs root / CAP_NET_ADMIN): {e}")
        self.created.append(self.hub)
        try:
            self._wire()
        except BaseException:
            self.delete()
            raise

    def _wire(self):
        tag = self.hub[:-1]
        ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        ip("-n", self.hub, "link", "set", "br0", "up")
        for i, ns in enumerate(self.ns):
            ip("netns", "add", ns)
            self.created.append(ns)
            # Created inside the host namespace, so nothing is left in the root one if we stop midway.
            ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", f"{tag}p{i}", "netns", self.hub)
            ip("-n", self.hub, "link", "set", f"{tag}p{i}", "master", "br0", "up")
            ip("-n", ns, "addr", "add", f"{SUBNET}.{i + 1}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")

    def address(self, i):
        return f"{SUBNET}.{i + 1}"

    def delete(self):
        for ns in reversed(self.created):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        self.created = []


@pytest.fixture(scope="module")
def hosts():
    h = None
    try:
        h = Hosts()
        yield h
    finally:
        if h:
            h.delete()


class Ranks:
    """The processes of one cluster run; all are killed by close()."""

    def __init__(self, hosts, workdir):
        self.hosts, self.dir, self.procs = hosts, Path(workdir), {}

    def start(self, name, ns, cmd, env=None):
        log = open(self.dir / f"{name}.log", "w")
        full_env = {k: v for k, v in os.environ.items() if not k.endswith("_proxy") and not k.endswith("_PROXY")}
        full_env.update(env or {})
        self.procs[name] = subprocess.Popen(["ip", "netns", "exec", ns, *map(str, cmd)], stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=full_env)
        log.close()

    def log(self, name):
        return (self.dir / f"{name}.log").read_text(errors="replace")

    def logs(self):
        return "\n".join(f"--- {n}\n{self.log(n)}" for n in self.procs)

    def wait_exit(self, name, timeout=30):
        try:
            return self.procs[name].wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + 10
        for p in self.procs.values():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def write_cluster(hosts, path):
    path.write_text(json.dumps({
        "model": str(MODEL.resolve()),
        "kv_blocks": KV_BLOCKS,
        "nodes": [{"name": f"n{i}", "address": f"{hosts.address(i)}:7100", "device": "cpu", "layers": layers}
                  for i, layers in enumerate([10, 12, 8])],  # uneven on purpose
        # Shaped hops over the veths too; small, so the test stays quick (3 ms per step).
        "links": [{"from": "n0", "to": "n1", "delay": "1ms"}, {"from": "n1", "to": "n2", "delay": "1500us"},
                  {"from": "n2", "to": "n0", "delay": "500us", "bandwidth": "1gbit"}],
    }))


def start_workers(ranks, hosts, cluster):
    ranks.start("rank1", hosts.ns[1], [WORKER, "--cluster", cluster, "--node", "n1", "--connect-timeout", "30"])
    ranks.start("rank2", hosts.ns[2], [WORKER, "--cluster", cluster, "--connect-timeout", "30"],
                env={"OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "3"})


def wait_listening(ranks, name, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in ranks.log(name).splitlines():
            if "listening on http://" in line:
                return int(line.rsplit(":", 1)[1])
        if ranks.procs[name].poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"{name} did not start:\n{ranks.logs()}")


def run_client(base_url, ns=None):
    cmd = [sys.executable, str(CLIENT), base_url]
    if ns:
        cmd = ["ip", "netns", "exec", ns, *cmd]
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_three_hosts_match_one_rank(hosts, tmp_path):
    with Server("--threads", "1") as one:
        reference = run_client(one.base_url)
    cluster = tmp_path / "cluster.json"
    write_cluster(hosts, cluster)
    ranks = Ranks(hosts, tmp_path)
    try:
        start_workers(ranks, hosts, cluster)
        ranks.start("rank0", hosts.ns[0], [BIN, "--cluster", cluster, "--host", "127.0.0.1", "--port", "0",
                                           "--threads", "1"])
        port = wait_listening(ranks, "rank0")
        out = ranks.log("rank0")
        assert "pipeline of 3 ranks ready" in out and f"{KV_BLOCKS} KV blocks" in out, out
        assert f"listening on {hosts.address(0)}:7100" in out and "UCX over TCP" in out, out
        assert "rank 1 of 3 (from --node n1)" in ranks.log("rank1"), ranks.logs()
        assert "rank 2 of 3 (from OMPI_COMM_WORLD_RANK)" in ranks.log("rank2"), ranks.logs()
        # Each rank shapes the hop it sends on, as the file's "links" say.
        assert "rank 0 -> 1: shaped (delay 1.000 ms" in out, out
        assert "rank 1 -> 2: shaped (delay 1.500 ms" in ranks.log("rank1"), ranks.logs()
        assert "rank 2 -> 0: shaped (delay 0.500 ms, jitter 0.000 ms, 1000000000 bit/s)" in ranks.log("rank2"), \
            ranks.logs()
        got = run_client(f"http://127.0.0.1:{port}", ns=hosts.ns[0])
        assert all(len(c["tokens"]) == 12 for c in reference["completions"]) and all(reference["streams"]), reference
        assert got == reference, (got, reference)
        ranks.procs["rank0"].terminate()
        assert ranks.wait_exit("rank0") == 0, ranks.logs()
        # Rank 0's closed link stops rank 1, whose closed link stops rank 2.
        assert ranks.wait_exit("rank1") == 0 and ranks.wait_exit("rank2") == 0, ranks.logs()
        for name in ("rank1", "rank2"):
            assert "upstream closed" in ranks.log(name), ranks.logs()
    finally:
        ranks.close()


def test_disagreeing_rank_fails_every_rank_at_rendezvous(hosts, tmp_path):
    cluster = tmp_path / "cluster.json"
    write_cluster(hosts, cluster)
    ranks = Ranks(hosts, tmp_path)
    try:
        start_workers(ranks, hosts, cluster)
        # Rank 0 overrides the file's KV blocks: the workers keep the file's.
        ranks.start("rank0", hosts.ns[0], [BIN, "--cluster", cluster, "--port", "0", "--threads", "1",
                                           "--kv-blocks", str(KV_BLOCKS - 1)])
        codes = {n: ranks.wait_exit(n, 60) for n in ("rank0", "rank1", "rank2")}
        message = f"has {KV_BLOCKS} KV blocks, rank 0 has {KV_BLOCKS - 1}"
        assert codes["rank0"] not in (0, None) and message in ranks.log("rank0"), (codes, ranks.logs())
        for name in ("rank1", "rank2"):
            assert codes[name] not in (0, None), (codes, ranks.logs())
            assert "rendezvous failed" in ranks.log(name) and message in ranks.log(name), ranks.logs()
        assert "listening on http://" not in ranks.log("rank0"), ranks.logs()
    finally:
        ranks.close()
