"""The PromQL of every panel in metrics/grafana/jarvis-dashboard.json, with Grafana's template
variables replaced by values Prometheus itself accepts (shared by the static and e2e tests)."""
import json
import os
import re

SOURCE_DIR = os.environ.get("JARVIS_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
DASHBOARD = os.path.join(SOURCE_DIR, "metrics", "grafana", "jarvis-dashboard.json")

# What Grafana would substitute: a 1-minute rate window (>= 4 scrapes at our 1-5 s intervals) and
# the "All" value of the model variable.
SUBSTITUTIONS = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "5m",
    "$model_name": ".*",
}


def load_dashboard():
    with open(DASHBOARD, encoding="utf-8") as f:
        return json.load(f)


def iter_panels(panels):
    for p in panels:
        yield p
        yield from iter_panels(p.get("panels", []))


def panel_queries(dashboard=None):
    """[(panel title, refId, expr)] with template variables substituted."""
    dashboard = dashboard or load_dashboard()
    out = []
    for p in iter_panels(dashboard["panels"]):
        for t in p.get("targets", []):
            expr = t["expr"]
            for var, value in SUBSTITUTIONS.items():
                expr = expr.replace(var, value)
            assert "$" not in expr, f"unsubstituted variable in {p['title']}: {expr}"
            out.append((p["title"], t["refId"], expr))
    return out


def metric_names(expr):
    """Series names an expression reads, with histogram suffixes stripped."""
    names = set(re.findall(r"\b(jarvis:[a-z0-9_]+)", expr))
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}
