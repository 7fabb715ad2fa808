"""`--cuda-graphs on|off` on the tools that make GPU shards (jarvis-cli, jarvis-serve, jarvis-worker):
listed in --help with its default, and anything but on/off refused by the option parser before a
model is opened. What the flag does (decode steps replayed from CUDA graphs) needs a GPU and is
checked by tests/gpu/model/cuda_graph_test.cpp through benchmarks/gpu/run_all.sh."""
import os
import subprocess
from pathlib import Path

import pytest

BIN = Path(os.environ.get("JARVIS_BIN_DIR", "build/bin"))
TOOLS = ["jarvis-cli", "jarvis-serve", "jarvis-worker"]


def run(tool, *args):
    exe = BIN / tool
    if not exe.exists():
        pytest.skip(f"{exe} not built")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("tool", TOOLS)
def test_help_lists_the_flag(tool):
    r = run(tool, "--help")
    assert r.returncode == 0, r
    line = next((l for l in r.stdout.splitlines() if "--cuda-graphs" in l), None)
    assert line is not None, r.stdout
    assert "on" in line


@pytest.mark.parametrize("tool", TOOLS)
def test_other_values_are_refused(tool):
    # No model given either: the value check must be what refuses the command line.
    r = run(tool, "--cuda-graphs", "maybe")
    assert r.returncode != 0, r
    assert "--cuda-graphs" in r.stderr + r.stdout and "maybe" in r.stderr + r.stdout, r.stderr
