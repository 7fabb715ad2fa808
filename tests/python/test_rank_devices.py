"""Per-rank devices: `jarvis-serve --ranks N --device D0,D1,...` (one device per rank) and a cluster
file's node "device". On the CPU a device list gives greedy completions token-identical to one rank
(the reference: the forward pass itself is checked against NumPy in test_forward_reference.py);
a GPU rank on a machine without a usable GPU (or a binary built without CUDA) is refused with exit 2
and a line naming the rank and the device, before any weight loads and without waiting on a
worker; a list of the wrong length is refused. The mixed CPU/GPU ring on a real GPU is
tests/gpu/test_mixed_ring.py (label gpu)."""
import json
import os
import subprocess
import time

import pytest

from serve_fixture import BIN, MODEL, Server, requires_server
from test_ranks import COMMON, PROMPTS, greedy_tokens
from test_tail_cluster import free_ports

pytestmark = requires_server
WORKER = BIN.parent / "jarvis-worker"
# A GPU no machine here can use: cuda:0 where there is no GPU (this CI machine), else an index no
# machine has, so the test means the same on a GPU machine.
BAD_GPU = "cuda:99" if os.path.exists("/dev/nvidia0") else "cuda:0"
# What check_cuda_device says, per build: no CUDA backend, no driver/device, or no such index.
WHY = ("built without the CUDA backend", "no usable CUDA device", "CUDA device(s)")


@pytest.fixture(scope="module")
def reference():
    with Server(*COMMON) as s:
        return [greedy_tokens(s, p) for p in PROMPTS]


@pytest.mark.parametrize("transport", ["ucx", "inproc"])
def test_cpu_device_list_matches_one_rank(reference, transport):
    s = Server("--ranks", "3", "--device", "cpu,cpu,cpu", "--transport", transport, *COMMON)
    try:
        assert "pipeline of 3 ranks ready" in s.output(), s.output()
        got = [greedy_tokens(s, p) for p in PROMPTS]
    finally:
        code, out = s.close()
    for g, want, prompt in zip(got, reference, PROMPTS):
        assert g == want, (transport, prompt)
    assert code == 0, out


def refused(cmd, timeout=30):
    """Runs cmd, which must exit 2 quickly; returns its stderr."""
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 2, (r.returncode, r.stderr)
    # Refused up front: loading the weights and starting workers would take longer; 10 s leaves
    # room for a busy CI machine.
    assert time.monotonic() - t0 < 10, r.stderr
    assert "listening on http" not in r.stderr and "jarvis-worker pid" not in r.stderr, r.stderr
    return r.stderr


def assert_names(err, rank, device):
    assert f"rank {rank}: device {device}" in err, err
    assert any(w in err for w in WHY), err


@pytest.mark.parametrize("devices,rank,transport", [
    (f"cpu,{BAD_GPU},cpu", 1, "ucx"), (f"cpu,cpu,{BAD_GPU}", 2, "inproc"), (f"{BAD_GPU},cpu,cpu", 0, "ucx"),
    (BAD_GPU, 0, "ucx")])
def test_unusable_gpu_rank_fails_fast(devices, rank, transport):
    err = refused([str(BIN), "--model", str(MODEL), "--port", "0", "--ranks", "3", "--device", devices,
                   "--transport", transport, *COMMON])
    assert_names(err, rank, BAD_GPU)


@pytest.mark.parametrize("devices,says", [
    ("cpu,cpu", "lists 2 devices for 3 ranks"), ("cpu,cpu,cpu,cpu", "lists 4 devices for 3 ranks"),
    ("cpu,tpu,cpu", "item 1"), ("cpu,,cpu", "item 1")])
def test_bad_device_list_is_refused(devices, says):
    err = refused([str(BIN), "--model", str(MODEL), "--port", "0", "--ranks", "3", "--device", devices])
    assert "error" in err and says in err, err


def write_cluster(tmp_path, devices):
    ports = free_ports(len(devices))
    cfg = {"model": str(MODEL.resolve()), "kv_blocks": 64,
           "nodes": [{"name": f"r{i}", "address": f"127.0.0.1:{ports[i]}", "device": d}
                     for i, d in enumerate(devices)]}
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(cfg))
    return path


def test_cluster_node_device_is_used(tmp_path):
    path = write_cluster(tmp_path, ["cpu", BAD_GPU, "cpu"])
    # Rank 1's node is on the GPU: its jarvis-worker refuses before loading, naming rank and device.
    err = refused([str(WORKER), "--cluster", str(path), "--rank", "1"])
    assert_names(err, 1, BAD_GPU)
    # --device overrides the node's: rank 2's node is on the CPU, its command line asks for the GPU.
    err = refused([str(WORKER), "--cluster", str(path), "--rank", "2", "--device", BAD_GPU])
    assert_names(err, 2, BAD_GPU)
    # Rank 0 (jarvis-serve) on a GPU node.
    path0 = write_cluster(tmp_path, [BAD_GPU, "cpu"])
    err = refused([str(BIN), "--cluster", str(path0), "--port", "0", "--threads", "1"])
    assert_names(err, 0, BAD_GPU)
    # With a cluster file --device is rank 0's only: a list is refused.
    err = refused([str(BIN), "--cluster", str(path0), "--port", "0", "--device", "cpu,cpu"])
    assert "--device is rank 0's only" in err, err


def test_cluster_device_override_to_cpu(tmp_path):
    # Rank 0's node says GPU, the command line says CPU: no device error; rank 0 loads and then
    # gives up on the ring (no worker runs) after its short connect timeout.
    path = write_cluster(tmp_path, [BAD_GPU, "cpu"])
    r = subprocess.run([str(BIN), "--cluster", str(path), "--port", "0", "--threads", "1", "--device", "cpu",
                        "--connect-timeout", "2"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0, r.stderr
    assert BAD_GPU not in r.stderr and not any(w in r.stderr for w in WHY), r.stderr
