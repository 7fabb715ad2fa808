"""Starts $JARVIS_BIN_DIR/jarvis-serve on a free port for a test and stops it afterwards."""
import os
import socket
import subprocess
import time
import urllib.request

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


class JarvisServe:
    def __init__(self, extra_args=(), startup_timeout=90):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.args = [SERVE, "--port", str(self.port), *extra_args]
        self.startup_timeout = startup_timeout
        self.proc = None

    def __enter__(self):
        self.log = open(os.path.join(os.environ.get("TMPDIR", "/tmp"), f"jarvis-serve-{self.port}.log"), "w+")
        self.proc = subprocess.Popen(self.args, cwd=SOURCE_DIR, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jarvis-serve exited with {self.proc.returncode}: {self.output()}")
            try:
                with urllib.request.urlopen(self.base + "/v1/models", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.__exit__()
        raise RuntimeError(f"jarvis-serve not ready in {self.startup_timeout} s: {self.output()}")

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-3000:]

    def get(self, path, timeout=10):
        with urllib.request.urlopen(self.base + path, timeout=timeout) as r:
            return r.read().decode()

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
