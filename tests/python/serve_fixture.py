"""Starts the real `jarvis-serve` binary ($JARVIS_BIN_DIR) on a free port against the default model,
for the HTTP API tests. One server process serves a whole test file (module-scoped fixture)."""
import http.client
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

BIN = Path(os.environ.get("JARVIS_BIN_DIR", "build/bin")) / "jarvis-serve"
SRC = Path(os.environ.get("JARVIS_SOURCE_DIR", "."))
MODEL = SRC / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct.Q4_1"  # the served name jarvis-serve derives from the file

requires_server = [
    pytest.mark.skipif(not BIN.exists(), reason=f"{BIN} not built"),
    pytest.mark.skipif(not MODEL.exists(), reason=f"{MODEL} missing (scripts/setup.sh installs it)"),
]


class Server:
    """A running jarvis-serve. `args` are extra flags."""

    def __init__(self, *args, api_key=None, start_timeout=90, prefix=()):
        """prefix: a command that runs jarvis-serve (e.g. prlimit with its options)."""
        self.log = tempfile.NamedTemporaryFile(prefix="jarvis-serve-", suffix=".log", delete=False)
        # A fixed, modest KV budget (512 MiB: about 11k tokens of SmolLM2, more than its 8k
        # context) rather than a fraction of this machine's memory, so parallel tests stay light.
        cmd = [*prefix, str(BIN), "--model", str(MODEL), "--host", "127.0.0.1", "--port", "0",
               "--kv-cache-bytes", str(512 << 20), *args]
        if api_key:
            cmd += ["--api-key", api_key]
        self.api_key = api_key
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.port = self._wait_port(start_timeout)
        self.host = "127.0.0.1"
        self.base_url = f"http://{self.host}:{self.port}"

    def _wait_port(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.output()
            for line in text.splitlines():
                if "listening on http://" in line:
                    return int(line.rsplit(":", 1)[1])
            if self.proc.poll() is not None:
                raise RuntimeError(f"jarvis-serve exited with {self.proc.returncode}:\n{text}")
            time.sleep(0.1)
        self.kill()
        raise RuntimeError("jarvis-serve did not start:\n" + self.output())

    def output(self):
        return Path(self.log.name).read_text(errors="replace")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def get(self, path, timeout=10):
        """GET `path`; the body as text (raises on a non-200 answer)."""
        status, _, data = self.request("GET", path, timeout=timeout)
        assert status == 200, (path, status, data[:200])
        return data.decode()

    def alive(self):
        return self.proc.poll() is None

    def headers(self, extra=None):
        h = {"Content-Type": "application/json"}
        if self.api_key:
            h["Authorization"] = f"Bearer {self.api_key}"
        h.update(extra or {})
        return h

    def request(self, method, path, body=None, headers=None, timeout=120):
        """One request over http.client; returns (status, headers dict, body bytes)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
            conn.request(method, path, body=body, headers=self.headers(headers))
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            conn.close()

    def post_json(self, path, body, **kw):
        status, headers, data = self.request("POST", path, body, **kw)
        return status, json.loads(data)

    def health(self):
        status, _, data = self.request("GET", "/health", timeout=10)
        return status, json.loads(data)

    def terminate(self, timeout=30):
        """SIGTERM; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self):
        """SIGTERM; returns (exit code, server output). The log file is removed."""
        code = self.terminate()
        out = self.output()
        try:
            os.unlink(self.log.name)
        except OSError:
            pass
        return code, out


def wait_idle(server, timeout=30):
    """Waits until the engine runs nothing; returns the last /health JSON."""
    deadline = time.monotonic() + timeout
    while True:
        _, h = server.health()
        if h["running"] == 0 and h["waiting"] == 0:
            return h
        if time.monotonic() > deadline:
            return h
        time.sleep(0.05)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sse_events(raw: bytes):
    """The `data:` payloads of an SSE body, in order (strings)."""
    out = []
    for block in raw.decode("utf-8").split("\n\n"):
        block = block.strip("\n")
        if not block:
            continue
        assert block.startswith("data: "), block
        out.append(block[len("data: "):])
    return out


_hf = None


def hf_tokenizer():
    """The model's tokenizer rebuilt with HF `tokenizers` from the GGUF vocabulary and merges
    (read with the PyPI `gguf` package): an implementation independent of ours. SmolLM2's own
    tokenizer.json is a byte-level BPE with individual digits split first."""
    global _hf
    if _hf is not None:
        return _hf
    from gguf import GGUFReader
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers import AddedToken

    reader = GGUFReader(str(MODEL))

    def strings(name):
        f = reader.fields[name]
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]

    tokens = strings("tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in strings("tokenizer.ggml.merges")]
    f = reader.fields["tokenizer.ggml.token_type"]
    types = [int(f.parts[i][0]) for i in f.data]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True) for t, ty in zip(tokens, types) if ty == 3])  # CONTROL
    _hf = tok
    return tok
