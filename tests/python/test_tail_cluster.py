"""A cluster file with `"tail"` on the last node: three local ranks (jarvis-serve plus two
`jarvis-worker --cluster`), the last one computing the logits, give greedy completions
token-identical to one rank; a tail on a middle node or a head off rank 0 is refused before
anything loads. (`--ranks N --tail last` is covered by test_ranks.py.)"""
import json
import os
import socket
import subprocess
import tempfile

import pytest

from serve_fixture import BIN, MODEL, Server, requires_server
from test_ranks import PROMPTS, greedy_tokens

pytestmark = requires_server
WORKER = BIN.parent / "jarvis-worker"


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def write_cluster(tmp_path, tail, head="r0"):
    ports = free_ports(3)
    cfg = {"model": str(MODEL.resolve()), "kv_blocks": 256, "head": head, "tail": tail,
           "nodes": [{"name": f"r{i}", "address": f"127.0.0.1:{ports[i]}", "layers": 10} for i in range(3)]}
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(cfg))
    return path


def serve_cmd(path):
    return [str(BIN), "--cluster", str(path), "--host", "127.0.0.1", "--port", "0", "--threads", "1"]


class ClusterServer(Server):
    """jarvis-serve as rank 0 of a cluster file (Server always passes --model, which --cluster refuses)."""

    def __init__(self, path):  # pylint: disable=super-init-not-called
        self.log = tempfile.NamedTemporaryFile(prefix="jarvis-serve-", suffix=".log", delete=False)
        self.api_key = None
        self.proc = subprocess.Popen(serve_cmd(path), stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        self.port = self._wait_port(90)
        self.host = "127.0.0.1"
        self.base_url = f"http://{self.host}:{self.port}"


@pytest.fixture(scope="module")
def reference():
    with Server("--threads", "1") as s:
        return [greedy_tokens(s, p) for p in PROMPTS]


def test_tail_on_last_node_matches_one_rank(reference, tmp_path):
    path = write_cluster(tmp_path, tail="r2")
    workers = [subprocess.Popen([str(WORKER), "--cluster", str(path), "--rank", str(r), "--threads", "1"],
                                stdout=open(tmp_path / f"w{r}.log", "w"), stderr=subprocess.STDOUT)
               for r in (2, 1)]
    server, code, out = None, None, ""
    try:
        server = ClusterServer(path)
        got = [greedy_tokens(server, p) for p in PROMPTS]
    finally:
        if server:
            code, out = server.close()
        for w in workers:
            try:
                w.wait(30)  # rank 0 closing the ring stops them
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait()
    assert "pipeline of 3 ranks ready" in out, out
    w2 = (tmp_path / "w2.log").read_text()
    assert "layers [20, 30) + head" in w2, w2  # the last rank loaded the tail
    for g, want, prompt in zip(got, reference, PROMPTS):
        assert g == want, prompt
    assert code == 0, out
    assert all(w.returncode == 0 for w in workers), [w.returncode for w in workers]


@pytest.mark.parametrize("tail,head,words", [("r1", "r0", '"tail" must be'), ("r0", "r1", "head (embedding)")])
def test_tail_or_head_elsewhere_is_refused(tmp_path, tail, head, words):
    path = write_cluster(tmp_path, tail=tail, head=head)
    r = subprocess.run(serve_cmd(path), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert words in r.stderr, r.stderr
    if tail == "r1":  # the middle worker refuses it too
        w = subprocess.run([str(WORKER), "--cluster", str(path), "--rank", "1"], capture_output=True, text=True,
                           timeout=60)
        assert w.returncode == 1 and "only be on the last rank" in w.stderr, w.stderr
