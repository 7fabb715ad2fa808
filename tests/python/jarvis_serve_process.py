"""Starts $JARVIS_BIN_DIR/jarvis-serve on a free port for a test and stops it afterwards."""
import os
import socket
import urllib.request

from managed_process import ManagedProcess

BIN_DIR = os.environ.get("JARVIS_BIN_DIR", "build/bin")
SOURCE_DIR = os.environ.get("JARVIS_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
SERVE = os.path.join(BIN_DIR, "jarvis-serve")
DEFAULT_MODEL = os.path.join(SOURCE_DIR, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def missing_reason():
    """Why a test needing jarvis-serve cannot run here, or None."""
    if not os.access(SERVE, os.X_OK):
        return f"{SERVE} not built"
    if not os.path.exists(DEFAULT_MODEL):
        return f"default model {DEFAULT_MODEL} missing (scripts/setup.sh installs it)"
    return None


class JarvisServe(ManagedProcess):
    name = "jarvis-serve"

    def __init__(self, extra_args=(), startup_timeout=90):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.args = [SERVE, "--port", str(self.port), *extra_args]
        self.startup_timeout = startup_timeout
        self.proc = None

    def __enter__(self):
        log = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"jarvis-serve-{self.port}.log")
        return self.start(self.args, log, self.base + "/v1/models", self.startup_timeout, cwd=SOURCE_DIR)

    def get(self, path, timeout=10):
        with urllib.request.urlopen(self.base + path, timeout=timeout) as r:
            return r.read().decode()
