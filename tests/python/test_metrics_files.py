"""Static checks of the metrics deliverables, against the real Prometheus tooling (promtool):
the dashboard's PromQL parses, it reads only metrics the server exports, the Prometheus config is
valid, and metrics/README.md documents every exported metric with its type."""
import os
import re
import shutil
import subprocess

import pytest

from dashboard_queries import SOURCE_DIR, iter_panels, load_dashboard, metric_names, panel_queries

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not found (Debian `prometheus`)")


def exported_metrics():
    """Names registered in metrics/*.cpp (serving, pipeline and HTTP metrics)."""
    names = set()
    for f in ("serving_metrics.cpp", "pipeline_metrics.cpp", "http_metrics.cpp"):
        src = open(os.path.join(SOURCE_DIR, "metrics", f), encoding="utf-8").read()
        names |= set(re.findall(r'"(jarvis:[a-z0-9_]+)"', src))
    assert len(names) >= 21, names
    return names


def readme_table():
    text = open(os.path.join(SOURCE_DIR, "metrics", "README.md"), encoding="utf-8").read()
    rows = re.findall(r"^\| `(jarvis:[a-z0-9_]+)` \| (\w+) \| ([^|]+) \| ([^|]+) \|$", text, re.M)
    return {name: (kind, labels, meaning) for name, kind, labels, meaning in rows}


def test_readme_documents_every_metric():
    table = readme_table()
    assert set(table) == exported_metrics()
    for name, (kind, labels, meaning) in table.items():
        assert kind in ("counter", "gauge", "histogram"), name
        assert name.endswith("_total") == (kind == "counter"), name
        assert "model_name" in labels, name
        assert len(meaning.strip()) > 20, name


def test_dashboard_shape():
    d = load_dashboard()
    assert 36 <= d["schemaVersion"] <= 41
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    panels = list(iter_panels(d["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    titles = " | ".join(p["title"] for p in panels).lower()
    for want in ("first token", "inter-token", "per output token", "end-to-end", "output token throughput",
                 "prompt throughput", "running / waiting", "kv cache", "finished requests", "preemptions",
                 "per rank and per link"):
        assert want in titles, want
    for p in panels:
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
            assert 'model_name=~"$model_name"' in t["expr"], (p["title"], t["expr"])
    # Panels must not overlap on Grafana's 24-column grid.
    cells = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps another panel"
                cells.add((x, y))


def test_dashboard_reads_only_exported_metrics():
    exported = exported_metrics()
    used = set()
    for title, ref, expr in panel_queries():
        names = metric_names(expr)
        assert names, (title, expr)
        assert names <= exported, (title, names - exported)
        used |= names
    assert used == exported, f"metrics with no panel: {exported - used}"


@needs_promtool
def test_dashboard_promql_parses(tmp_path):
    # promtool parses a recording rule's expression with the server's PromQL parser.
    rules = ["groups:", "  - name: dashboard", "    rules:"]
    for i, (title, ref, expr) in enumerate(panel_queries()):
        rules += [f"      - record: dashboard_query_{i}", f"        expr: '{expr}'"]
    path = tmp_path / "rules.yml"
    path.write_text("\n".join(rules) + "\n")
    r = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@needs_promtool
def test_prometheus_config_is_valid():
    cfg = os.path.join(SOURCE_DIR, "metrics", "prometheus", "prometheus.yml")
    r = subprocess.run([PROMTOOL, "check", "config", cfg], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    text = open(cfg, encoding="utf-8").read()
    assert "127.0.0.1:8000" in text
    interval = re.search(r"scrape_interval:\s*(\d+)s", text)
    assert interval and 1 <= int(interval.group(1)) <= 5
