"""`jarvis-serve --device-sampling on|off`: listed in --help with its default (on), `off` accepted
by the option parser (the run then fails only at the model it was pointed to), anything else
refused with exit 2 before a model is opened. What the switch does needs a GPU rank 0: on the CPU
its path is tests/unit/pipeline_device_sampling_test.cpp (a shard double that samples "on its
device"), on a GPU tests/gpu/mixed_ring_test.py (the ring with device sampling on and off)."""
import os
import subprocess
from pathlib import Path

import pytest

BIN = Path(os.environ.get("JARVIS_BIN_DIR", "build/bin"))


def serve(*args):
    exe = BIN / "jarvis-serve"
    if not exe.exists():
        pytest.skip(f"{exe} not built")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=30)


def test_help_lists_the_flag_with_its_default():
    r = serve("--help")
    assert r.returncode == 0, r
    line = next((l for l in r.stdout.splitlines() if "--device-sampling" in l), None)
    assert line is not None, r.stdout
    # CLI11 prints the choices and the default beside the option: TEXT:{on,off}=on
    after = r.stdout.split("--device-sampling", 1)[1].split("--", 1)[0]
    assert "{on,off}=on" in after.replace(" ", ""), after


@pytest.mark.parametrize("value", ["on", "off"])
def test_on_and_off_are_accepted(value, tmp_path):
    missing = tmp_path / "no-such-model.gguf"
    r = serve("--device-sampling", value, "--model", str(missing), "--port", "0")
    # Past the parser: the run fails at the model file (exit 1), not at the flag (exit 2).
    assert r.returncode == 1, r
    assert "--device-sampling" not in r.stderr, r.stderr
    assert str(missing) in r.stderr, r.stderr


@pytest.mark.parametrize("value", ["maybe", "ON", "1", ""])
def test_other_values_are_refused(value):
    r = serve("--device-sampling", value)
    assert r.returncode == 2, r
    assert "--device-sampling" in r.stderr + r.stdout, r.stderr
