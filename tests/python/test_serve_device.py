"""`jarvis-serve --device`: a device that cannot serve is refused with exit 2 and a clear line before
any weight loads (here and on a GPU machine alike: no machine has a cuda:99; a per-rank list of the
wrong length is refused everywhere; more in test_rank_devices.py). Serving on a real GPU is checked by benchmarks/gpu/run_all.sh."""
import subprocess
import time

import pytest

from serve_fixture import BIN, MODEL, requires_server

pytestmark = requires_server


@pytest.mark.parametrize("args,says", [
    (["--device", "cuda:99"], "cuda:99"),
    (["--device", "tpu"], "expected cpu, cuda or cuda:N"),
    (["--device", "cuda", "--gpu-dtype", "f8"], "expected f16, bf16 or f32"),
    (["--device", "cuda:0,cpu,cpu", "--ranks", "2"], "lists 3 devices for 2 ranks"),
    (["--device", "cpu,cuda:99", "--ranks", "2"], "rank 1: device cuda:99"),
])
def test_unusable_device_exits_before_loading(args, says):
    t0 = time.monotonic()
    r = subprocess.run([str(BIN), "--model", str(MODEL), "--port", "0", *args], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2, r
    assert "error" in r.stderr and says in r.stderr, r.stderr
    assert "listening" not in r.stderr and "pipeline" not in r.stderr, r.stderr
    assert time.monotonic() - t0 < 10  # refused up front, not after loading the model
