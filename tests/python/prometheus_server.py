"""A real Prometheus server (Debian `prometheus`) for tests: scrapes given targets every second,
keeps its data in a temporary directory, answers PromQL over its HTTP API."""
import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

from serve_fixture import free_port

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")


class PrometheusServer:
    def __init__(self, targets, workdir, scrape_interval="1s"):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.workdir = str(workdir)
        self.config = os.path.join(self.workdir, "prometheus.yml")
        with open(self.config, "w") as f:
            f.write(f"global:\n  scrape_interval: {scrape_interval}\n  evaluation_interval: {scrape_interval}\n"
                    "scrape_configs:\n  - job_name: jarvis-serve\n    static_configs:\n"
                    f"      - targets: [{', '.join(repr(t) for t in targets)}]\n")
        self.proc = None

    def __enter__(self):
        self.log = open(os.path.join(self.workdir, "prometheus.log"), "w+")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={self.config}",
             f"--storage.tsdb.path={os.path.join(self.workdir, 'data')}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.proc.returncode}: {self.output()}")
            try:
                with urllib.request.urlopen(self.base + "/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.__exit__()
        raise RuntimeError("prometheus not ready in 30 s: " + self.output())

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-3000:]

    def query(self, promql):
        """Instant query at now: the `data` object of the API's answer (raises on an error)."""
        url = self.base + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=10) as r:
            answer = json.load(r)
        assert answer["status"] == "success", answer
        return answer["data"]

    def wait_for(self, promql, predicate, timeout=30):
        """Polls until predicate(result list) holds; returns the result."""
        deadline = time.monotonic() + timeout
        result = None
        while time.monotonic() < deadline:
            result = self.query(promql)["result"]
            if predicate(result):
                return result
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting on {promql}: last result {result}")

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def promtool_check_metrics(text):
    """Runs `promtool check metrics`; returns the problems other than the ':' naming lint that our
    vLLM-style names draw on purpose (see metrics/README.md). Raises if the text does not parse."""
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True)
    lines = [l for l in (r.stdout + r.stderr).splitlines() if l.strip()]
    if r.returncode not in (0, 3):
        raise AssertionError(f"promtool could not parse the metrics (rc {r.returncode}): {lines}")
    return [l for l in lines if not l.endswith("metric names should not contain ':'")]
