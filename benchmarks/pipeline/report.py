"""Table and plot of a pipeline sweep (benchmarks/pipeline/sweep.sh): output throughput and TPOT
at each concurrency with micro-batching off (1 step in the ring) and on (one per rank).
Writes <out>/sweep.json and <out>/throughput.png; prints a markdown table."""
import json
import sys

out_dir, delay, ranks, concurrencies = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
modes = {"1": "off (1 in flight)", ranks: f"on ({ranks} in flight)"}
rows = {}
for m in modes:
    for c in concurrencies:
        r = json.load(open(f"{out_dir}/m{m}-c{c}.json"))
        rows[(m, c)] = {"output_tok_s": r["output_throughput"], "tpot_ms": r["tpot_ms"]["mean"],
                        "ttft_ms": r["ttft_ms"]["mean"], "itl_p50_ms": r["itl_ms"]["p50"],
                        "completed": r["completed"], "failed": r["failed"]}

print(f"| concurrency | micro-batching | requests (failed) | output tok/s | TPOT mean ms | ITL p50 ms | TTFT mean ms |"
      f" on / off |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for c in concurrencies:
    for m, label in modes.items():
        r = rows[(m, c)]
        gain = rows[(m, c)]["output_tok_s"] / rows[("1", c)]["output_tok_s"]
        print(f"| {c} | {label} | {r['completed']} ({r['failed']}) | {r['output_tok_s']:.1f} | {r['tpot_ms']:.1f} |"
              f" {r['itl_p50_ms']:.1f} | {r['ttft_ms']:.0f} | {'' if m == '1' else f'x{gain:.2f}'} |")

json.dump({"delay": delay, "ranks": int(ranks),
           "results": [{"micro_batches": int(m), "concurrency": int(c), **v} for (m, c), v in rows.items()]},
          open(f"{out_dir}/sweep.json", "w"), indent=1)

try:
    import matplotlib
except ImportError:
    sys.exit("matplotlib missing: pip install -r benchmarks/pipeline/requirements.txt (table above is complete)")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
xs = [int(c) for c in concurrencies]
for m, label in modes.items():
    ax.plot(xs, [rows[(m, c)]["output_tok_s"] for c in concurrencies], marker="o", label=f"micro-batching {label}")
ax.set_xlabel("concurrent requests")
ax.set_ylabel("output tokens/s (aggregate)")
ax.set_xticks(xs)
ax.set_title(f"SmolLM2-135M over {ranks} ranks, {delay} one-way per link")
ax.grid(alpha=0.3)
ax.legend()
fig.tight_layout()
fig.savefig(f"{out_dir}/throughput.png")
print(f"\nplot: {out_dir}/throughput.png")
