"""Processes for the comparison benchmarks: a command run to its end with its peak RSS, and an
HTTP server started, waited for, measured and stopped. Peak RSS is the kernel's high-water mark of
resident memory (VmHWM; ru_maxrss of the reaped child is the same counter), file-backed pages of
an mmapped model included, so engines that mmap and engines that copy are measured alike."""
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass


@dataclass
class Finished:
    cmd: list
    returncode: int
    stdout: str
    stderr: str
    peak_rss_bytes: int
    seconds: float


def run_measured(cmd, timeout_s):
    """Runs cmd to its end; raises RuntimeError (with its stderr) when it fails or times out."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        deadline = start + timeout_s
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                proc.returncode = -9
                raise RuntimeError(f"timed out after {timeout_s} s: {' '.join(map(str, cmd))}")
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        seconds = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        done = Finished(cmd, proc.returncode, out.read().decode(errors="replace"),
                        err.read().decode(errors="replace"), usage.ru_maxrss * 1024, seconds)
    if done.returncode != 0:
        raise RuntimeError(f"exit status {done.returncode}: {' '.join(map(str, cmd))}\n{done.stderr[-3000:]}")
    return done


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vm_hwm_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmHWM")


class Server:
    """`with Server(cmd, base_url) as s:` starts cmd, waits until GET {base_url}/models answers,
    and stops it (SIGTERM, then SIGKILL) on the way out. s.peak_rss_bytes() reads VmHWM."""

    def __init__(self, cmd, base_url, ready_timeout_s=300, log_path=None):
        self.cmd = cmd
        self.base_url = base_url
        self.ready_timeout_s = ready_timeout_s
        self.log_path = log_path
        self.proc = None
        self._log = None

    def __enter__(self):
        self._log = open(self.log_path, "wb") if self.log_path else tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            if self.proc.poll() is not None:
                tail = self.log_tail()
                self.__exit__(None, None, None)
                raise RuntimeError(f"server exited with {self.proc.returncode} before answering: "
                                   f"{' '.join(map(str, self.cmd))}\n{tail}")
            try:
                with urllib.request.urlopen(self.base_url + "/models", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"server did not answer within {self.ready_timeout_s} s: "
                                   f"{' '.join(map(str, self.cmd))}")
            time.sleep(0.2)

    def peak_rss_bytes(self):
        return vm_hwm_bytes(self.proc.pid)

    def log_tail(self, n=3000):
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-n:]

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log:
            self._log.close()
