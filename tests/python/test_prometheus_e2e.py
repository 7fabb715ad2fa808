"""jarvis-serve scraped by a real Prometheus server: the TTFT histogram is queryable, every panel
of the Grafana dashboard returns data, and `promtool check metrics` accepts the live /metrics.
The server runs as a 3-rank pipeline, so the per-rank and per-link panels have data too."""
import json
import math
import threading
import urllib.request

import pytest

from dashboard_queries import panel_queries
from serve_fixture import Server, requires_server
from prometheus_server import PROMETHEUS, PROMTOOL, PrometheusServer, promtool_check_metrics

pytestmark = [
    pytest.mark.skipif(PROMETHEUS is None or PROMTOOL is None,
                       reason="prometheus/promtool not found (Debian package `prometheus`)"),
    *requires_server,
]


def post(base, path, body):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return r.read().decode()


def send_traffic(base, model):
    """Streamed and plain completions and chats, some at once so the batch holds several."""
    def completion(i, stream):
        post(base, "/v1/completions", {"model": model, "prompt": f"Count to {i}:", "max_tokens": 8,
                                       "stream": stream, "temperature": 0})

    def chat(i):
        post(base, "/v1/chat/completions",
             {"model": model, "messages": [{"role": "user", "content": f"Say {i} words."}],
              "max_tokens": 6, "stream": True})

    threads = [threading.Thread(target=completion, args=(i, i % 2 == 0)) for i in range(4)]
    threads.append(threading.Thread(target=chat, args=(5,)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(threads)


def exercise(prom, serve_base, model):
    """The checks proper; they need only a server with /metrics and the OpenAI routes."""
    # Traffic only once Prometheus has a first sample, so rate() sees the counters move.
    prom.wait_for("up", lambda r: r and r[0]["value"][1] == "1")
    requests = send_traffic(serve_base, model)
    # Two more scrapes after the last request have it in every series.
    count = prom.wait_for("sum(jarvis:time_to_first_token_seconds_count)",
                          lambda r: r and float(r[0]["value"][1]) >= requests)
    assert float(count[0]["value"][1]) >= requests

    p50 = prom.wait_for(
        "histogram_quantile(0.5, sum by (le) (rate(jarvis:time_to_first_token_seconds_bucket[1m])))",
        lambda r: r and math.isfinite(float(r[0]["value"][1])))
    assert float(p50[0]["value"][1]) > 0
    # The pipeline series come with the ring's statistics rounds (about 1 s apart): wait until
    # a rate over them has two samples, for every rank and every link's round-trip time.
    prom.wait_for("sum by (rank) (rate(jarvis:stage_busy_seconds_total[1m]))", lambda r: len(r) == 3)
    prom.wait_for("jarvis:link_rtt_seconds", lambda r: len(r) == 3)

    empty = []
    for title, ref, expr in panel_queries():
        if not prom.query(expr)["result"]:
            empty.append(f"{title} [{ref}]: {expr}")
    assert not empty, "dashboard queries with no data:\n" + "\n".join(empty)

    # The model label is what the dashboard's model variable lists.
    models = prom.query("count by (model_name) (jarvis:num_requests_running)")["result"]
    assert [m["metric"]["model_name"] for m in models] == [model]


# Three ranks on this machine, one compute thread each (the CI machine has 2 cores).
PIPELINE = ["--ranks", "3", "--threads", "1", "--worker-threads", "1"]


def test_prometheus_scrapes_jarvis_serve(tmp_path):
    with Server(*PIPELINE) as serve:
        model = json.loads(serve.get("/v1/models"))["data"][0]["id"]
        with PrometheusServer([f"127.0.0.1:{serve.port}"], tmp_path) as prom:
            exercise(prom, serve.base_url, model)
        assert promtool_check_metrics(serve.get("/metrics")) == []
