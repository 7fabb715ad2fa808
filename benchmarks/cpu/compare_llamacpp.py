"""Jarvis against llama.cpp on one GGUF file, on this machine, in one run (issue 10's "Proof"):
decode tok/s (128 tokens) and prompt tok/s (a 128-token prompt) at 1 and 2 threads, aggregate
output tok/s at 16 streams (jarvis-serve vs llama-server -np 16, both driven by jarvis-bench),
peak RSS of every process, and the memory-bandwidth bound with each engine's fraction of it.
Builds nothing: it takes built Jarvis binaries and a llama.cpp build directory
(benchmarks/cpu/build_llamacpp.sh makes one). Prints a Markdown report; --out writes it too.

    benchmarks/cpu/compare_llamacpp.sh --llama-build /work/refs/llama.cpp-build [--runs 3]
"""
import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_procs import Server, free_port, run_measured  # noqa: E402
from gguf_bytes import weight_bytes  # noqa: E402

PROMPT_TOKENS = 128
DECODE_TOKENS = 128
SLOT_CONTEXT = 512  # tokens per stream on either server: a 128-token prompt + 128 outputs fit
MIB = 1024 * 1024

# Natural text, so that prompt processing tokenizes like a user's prompt would.
TEXT = ("The history of computing is a story of ideas that changed how people work and live. "
        "Early machines filled rooms and were programmed by hand with switches and cables; "
        "later, stored programs, transistors and integrated circuits made them small and cheap. ")


def machine():
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M %Z')}"


def shown(cmd, args, **names):
    """cmd as the report prints it: the model file as MODEL, binaries by their names, and any
    value in names (a prompt, a port) by its key."""
    out = []
    for word in map(str, cmd):
        if word == args.model:
            out.append("MODEL")
        elif os.path.isabs(word) and os.access(word, os.X_OK):
            out.append(os.path.basename(word))
        else:
            key = next((k for k, v in names.items() if word == str(v)), None)
            out.append(key if key else shlex.quote(word))
    return " ".join(out)


# --- Jarvis ---------------------------------------------------------------------------------

def jarvis_tokenize(bin_dir, model, mode, payload):
    r = subprocess.run([os.path.join(bin_dir, "jarvis-tokenize"), "--model", model, mode],
                       input=json.dumps(payload) + "\n", capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"jarvis-tokenize {mode}: {r.stderr}")
    return json.loads(r.stdout)


def prompt_of_exactly(bin_dir, model, n):
    """Text that the model's tokenizer turns into exactly n tokens (checked, not assumed)."""
    ids = jarvis_tokenize(bin_dir, model, "encode", {"text": TEXT * 8})["ids"]
    for cut in range(n, n + 8):  # a cut inside a word may re-tokenize differently: move it on
        text = jarvis_tokenize(bin_dir, model, "decode", {"ids": ids[:cut]})["text"]
        if len(jarvis_tokenize(bin_dir, model, "encode", {"text": text})["ids"]) == n:
            return text
    raise RuntimeError(f"no prefix of the text tokenizes to exactly {n} tokens")


def parse_cli_stats(stderr):
    stats = {}
    for line in stderr.splitlines():
        if line.startswith("prompt: "):  # prompt: 128 tokens, 123.45 tokens/s
            words = line.split()
            stats["prompt_tokens"], stats["prompt_tps"] = int(words[1]), float(words[3])
        elif line.startswith("generated: "):
            words = line.split()
            stats["generated_tokens"], stats["decode_tps"] = int(words[1]), float(words[3])
    if "prompt_tps" not in stats or "decode_tps" not in stats:
        raise RuntimeError("jarvis-cli printed no prompt/decode speed:\n" + stderr[-2000:])
    return stats


def jarvis_cli(args, prompt, threads):
    # -n 129: the first token comes out of the prefill, so 128 decode steps follow it, as in
    # llama-bench's tg128; jarvis-cli's decode rate is (generated - 1) / decode time.
    cmd = [os.path.join(args.jarvis_bin, "jarvis-cli"), "-m", args.model, "-p", prompt,
           "-n", str(DECODE_TOKENS + 1), "--ignore-eos", "--temperature", "0", "-t", str(threads),
           "--ctx", str(SLOT_CONTEXT), "--chunk", str(SLOT_CONTEXT)]
    runs = []
    for _ in range(args.runs):
        done = run_measured(cmd, timeout_s=1800)
        stats = parse_cli_stats(done.stderr)
        if stats["prompt_tokens"] != PROMPT_TOKENS or stats["generated_tokens"] != DECODE_TOKENS + 1:
            raise RuntimeError(f"jarvis-cli ran {stats}, not a {PROMPT_TOKENS}-token prompt and "
                               f"{DECODE_TOKENS + 1} tokens")
        runs.append((stats, done.peak_rss_bytes))
    return {
        "prompt_tps": statistics.median(s["prompt_tps"] for s, _ in runs),
        "decode_tps": statistics.median(s["decode_tps"] for s, _ in runs),
        "peak_rss": max(rss for _, rss in runs),
        "samples": [s for s, _ in runs],
        "command": shown(cmd, args, **{f"<{PROMPT_TOKENS}-token prompt>": prompt}),
    }


def jarvis_membw(args):
    done = run_measured([os.path.join(args.jarvis_bin, "jarvis-membw"), "1024", "2"], timeout_s=600)
    bw = {}
    for line in done.stdout.splitlines():  # threads=1 read_bandwidth_GBps=17.40
        fields = dict(kv.split("=") for kv in line.split())
        bw[int(fields["threads"])] = float(fields["read_bandwidth_GBps"]) * 1e9
    return bw


# --- llama.cpp ------------------------------------------------------------------------------

def llama_binary(args, name):
    path = os.path.join(args.llama_build, "bin", name)
    if not os.access(path, os.X_OK):
        raise SystemExit(f"{path} not found: build llama.cpp with benchmarks/cpu/build_llamacpp.sh")
    return path


def llama_bench(args, threads):
    cmd = [llama_binary(args, "llama-bench"), "-m", args.model, "-p", str(PROMPT_TOKENS),
           "-n", str(DECODE_TOKENS), "-t", str(threads), "-r", str(args.runs), "-o", "json"]
    done = run_measured(cmd, timeout_s=1800)
    out = {"peak_rss": done.peak_rss_bytes, "command": shown(cmd, args)}
    for test in json.loads(done.stdout):
        # Median of the per-repetition rates where llama-bench lists them (as for Jarvis).
        samples = test.get("samples_ts") or [test["avg_ts"]]
        rate = statistics.median(samples)
        if test["n_prompt"] == PROMPT_TOKENS and test["n_gen"] == 0:
            out["prompt_tps"] = rate
        elif test["n_gen"] == DECODE_TOKENS and test["n_prompt"] == 0:
            out["decode_tps"] = rate
    if "prompt_tps" not in out or "decode_tps" not in out:
        raise RuntimeError("llama-bench reported no pp128/tg128:\n" + done.stdout[-2000:])
    return out


# --- serving --------------------------------------------------------------------------------

def bench_server(args, base_url, work, name):
    json_path = os.path.join(work, f"{name}.json")
    cmd = [os.path.join(args.jarvis_bin, "jarvis-bench"), "--base-url", base_url,
           "-n", str(args.requests), "--concurrency", str(args.streams),
           "--input-len", str(PROMPT_TOKENS), "--output-len", str(args.serve_output_len),
           "--warmup", "1", "--json", json_path]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if r.returncode not in (0, 1) or not os.path.exists(json_path):
        raise RuntimeError(f"jarvis-bench against {name}: exit {r.returncode}\n{r.stdout}{r.stderr}")
    with open(json_path) as f:
        res = json.load(f)
    if res["failed"]:
        print(f"warning: {res['failed']} of {res['requests']} requests to {name} failed: "
              f"{res.get('errors', [])[:3]}", file=sys.stderr)
    ok = [q for q in res["per_request"] if q["ok"]]
    return {
        "output_tps": res["output_throughput"], "completed": res["completed"], "failed": res["failed"],
        "resent": res.get("resent", 0), "errors": res.get("errors", [])[:3],
        "tpot_ms": res["tpot_ms"]["mean"], "ttft_ms": res["ttft_ms"]["mean"],
        "prompt_tokens": statistics.mean(q["prompt_tokens"] for q in ok) if ok else 0,
        "output_tokens": statistics.mean(q["output_tokens"] for q in ok) if ok else 0,
        "command": shown(cmd[:-2], args, URL=base_url),
    }


def serve_jarvis(args, work):
    port = free_port()
    # The same KV capacity in tokens as llama-server's -c: streams x SLOT_CONTEXT.
    cmd = [os.path.join(args.jarvis_bin, "jarvis-serve"), "-m", args.model, "--port", str(port),
           "--threads", str(args.serve_threads), "--max-num-seqs", str(args.streams),
           "--kv-blocks", str(args.streams * SLOT_CONTEXT // 16), "--page-size", "16"]
    with Server(cmd, f"http://127.0.0.1:{port}/v1", log_path=os.path.join(work, "jarvis-serve.log")) as s:
        out = bench_server(args, s.base_url, work, "jarvis-serve")
        out["peak_rss"] = s.peak_rss_bytes()
    out["server_command"] = shown(cmd, args, PORT=port)
    return out


def serve_llama(args, work):
    port = free_port()
    cmd = [llama_binary(args, "llama-server"), "-m", args.model, "--host", "127.0.0.1", "--port",
           str(port), "-t", str(args.serve_threads), "-np", str(args.streams),
           "-c", str(args.streams * SLOT_CONTEXT)]
    with Server(cmd, f"http://127.0.0.1:{port}/v1", log_path=os.path.join(work, "llama-server.log")) as s:
        out = bench_server(args, s.base_url, work, "llama-server")
        out["peak_rss"] = s.peak_rss_bytes()
    out["server_command"] = shown(cmd, args, PORT=port)
    return out


# --- report ---------------------------------------------------------------------------------

def ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "n/a"


def report(r, args):
    w, bw = r["weights"], r["bandwidth"]
    lines = [f"Model `{args.model}`: {w['per_token'] / 1e6:.1f} MB of weights read per decoded "
             f"token (layers {w['layers'] / 1e6:.1f} MB + head {w['head'] / 1e6:.1f} MB"
             f"{', the tied embedding' if w['tied_head'] else ''}; file {w['file_bytes'] / 1e6:.1f} MB). "
             f"Memory read bandwidth (`jarvis-membw 1024 2`): "
             + ", ".join(f"{bw[t] / 1e9:.1f} GB/s at {t} thread{'s' if t > 1 else ''}" for t in sorted(bw))
             + ".", "",
             "| measurement | Jarvis | llama.cpp | Jarvis / llama.cpp |", "| --- | --- | --- | --- |"]
    for t in args.threads:
        j, l = r["jarvis_cli"][str(t)], r["llama_bench"][str(t)]
        lines.append(f"| decode tok/s, {DECODE_TOKENS} tokens, {t} thread{'s' if t > 1 else ''} | "
                     f"{j['decode_tps']:.1f} | {l['decode_tps']:.1f} | {ratio(j['decode_tps'], l['decode_tps'])} |")
    for t in args.threads:
        j, l = r["jarvis_cli"][str(t)], r["llama_bench"][str(t)]
        lines.append(f"| prompt tok/s, {PROMPT_TOKENS}-token prompt, {t} thread{'s' if t > 1 else ''} | "
                     f"{j['prompt_tps']:.1f} | {l['prompt_tps']:.1f} | {ratio(j['prompt_tps'], l['prompt_tps'])} |")
    if "serve" in r:
        j, l = r["serve"]["jarvis"], r["serve"]["llama"]
        lines.append(f"| output tok/s, {args.streams} streams ({PROMPT_TOKENS} in / {args.serve_output_len} out, "
                     f"{args.requests} requests) | {j['output_tps']:.1f} | {l['output_tps']:.1f} | "
                     f"{ratio(j['output_tps'], l['output_tps'])} |")
        lines.append(f"| mean TPOT / TTFT ms, {args.streams} streams | {j['tpot_ms']:.1f} / {j['ttft_ms']:.0f} | "
                     f"{l['tpot_ms']:.1f} / {l['ttft_ms']:.0f} | |")
        lines.append(f"| failed (resent) requests, {args.streams} streams | {j['failed']} ({j['resent']}) | "
                     f"{l['failed']} ({l['resent']}) | |")
    t_max = str(max(args.threads))
    j, l = r["jarvis_cli"][t_max], r["llama_bench"][t_max]
    lines.append(f"| peak RSS MiB: jarvis-cli / llama-bench, {t_max} threads | {j['peak_rss'] / MIB:.0f} | "
                 f"{l['peak_rss'] / MIB:.0f} | {ratio(j['peak_rss'], l['peak_rss'])} |")
    if "serve" in r:
        j, l = r["serve"]["jarvis"], r["serve"]["llama"]
        lines.append(f"| peak RSS MiB: jarvis-serve / llama-server, {args.streams} streams | "
                     f"{j['peak_rss'] / MIB:.0f} | {l['peak_rss'] / MIB:.0f} | {ratio(j['peak_rss'], l['peak_rss'])} |")
    lines += ["", "| threads | bound tok/s (bandwidth / bytes per token) | Jarvis decode, fraction of bound | "
              "llama.cpp decode, fraction of bound |", "| --- | --- | --- | --- |"]
    for t in args.threads:
        if t not in bw:
            continue
        bound = bw[t] / w["per_token"]
        j, l = r["jarvis_cli"][str(t)]["decode_tps"], r["llama_bench"][str(t)]["decode_tps"]
        lines.append(f"| {t} | {bound:.0f} | {j:.1f} ({100 * j / bound:.0f}%) | {l:.1f} ({100 * l / bound:.0f}%) |")
    lines += ["", "Commands (MODEL is the file above; medians of "
              f"{args.runs} runs):", ""]
    for t in args.threads:
        lines.append(f"- `{r['jarvis_cli'][str(t)]['command']}`")
        lines.append(f"- `{r['llama_bench'][str(t)]['command']}`")
    if "serve" in r:
        for k in ("jarvis", "llama"):
            lines.append(f"- `{r['serve'][k]['server_command']}` + `{r['serve'][k]['command']}`")
        lines.append(f"- prompt / output tokens per request as the servers counted them: jarvis-serve "
                     f"{r['serve']['jarvis']['prompt_tokens']:.0f} / {r['serve']['jarvis']['output_tokens']:.0f}, "
                     f"llama-server {r['serve']['llama']['prompt_tokens']:.0f} / "
                     f"{r['serve']['llama']['output_tokens']:.0f}")
    loads = r["load_averages"]
    lines.append(f"- {r['machine']}; 1-minute load average before each step: "
                 + ", ".join(f"{v:.1f}" for v in loads)
                 + (" (the machine was busy: provisional figures)" if max(loads) > 1.5 else ""))
    return "\n".join(lines) + "\n"


def parse_args(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--llama-build", required=True, help="llama.cpp build directory (has bin/llama-bench)")
    p.add_argument("--model", default=os.path.join(root, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    p.add_argument("--jarvis-bin", default=os.environ.get("JARVIS_BIN_DIR", os.path.join(root, "build", "bin")))
    p.add_argument("--runs", type=int, default=3, help="repetitions of each CLI measurement (median)")
    p.add_argument("--threads", default="1,2", help="thread counts of the CLI rows")
    p.add_argument("--streams", type=int, default=16, help="concurrent streams of the serving row")
    p.add_argument("--requests", type=int, default=32, help="requests of the serving row")
    p.add_argument("--serve-output-len", type=int, default=DECODE_TOKENS)
    p.add_argument("--serve-threads", type=int, default=2)
    p.add_argument("--no-serving", action="store_true", help="only the CLI rows")
    p.add_argument("--out", help="also write the Markdown report here")
    p.add_argument("--json", help="write every measurement here")
    args = p.parse_args(argv)
    args.threads = [int(t) for t in args.threads.split(",")]
    args.model = os.path.abspath(args.model)
    if not os.path.exists(args.model):
        p.error(f"model {args.model} not found")
    for tool in ("jarvis-cli", "jarvis-serve", "jarvis-bench", "jarvis-membw", "jarvis-tokenize"):
        if not os.access(os.path.join(args.jarvis_bin, tool), os.X_OK):
            p.error(f"{args.jarvis_bin}/{tool} not built (ninja -C build {tool})")
    return args


def main(argv):
    args = parse_args(argv)
    llama_binary(args, "llama-bench")
    if not args.no_serving:
        llama_binary(args, "llama-server")
    loads = []

    def step(what):  # the load others put on the machine is part of every figure: record it
        loads.append(os.getloadavg()[0])
        print(f"[{time.strftime('%H:%M:%S')}] {what} (load {loads[-1]:.1f})", file=sys.stderr, flush=True)

    weights = weight_bytes(args.model)
    r = {"weights": dict(vars(weights), per_token=weights.per_token), "jarvis_cli": {}, "llama_bench": {}}
    step("memory bandwidth")
    r["bandwidth"] = jarvis_membw(args)
    prompt = prompt_of_exactly(args.jarvis_bin, args.model, PROMPT_TOKENS)
    for t in args.threads:
        step(f"jarvis-cli, {t} thread(s)")
        r["jarvis_cli"][str(t)] = jarvis_cli(args, prompt, t)
        step(f"llama-bench, {t} thread(s)")
        r["llama_bench"][str(t)] = llama_bench(args, t)
    if not args.no_serving:
        with tempfile.TemporaryDirectory() as work:
            step(f"jarvis-serve + jarvis-bench, {args.streams} streams")
            jarvis = serve_jarvis(args, work)
            step(f"llama-server -np {args.streams} + jarvis-bench")
            llama = serve_llama(args, work)
        r["serve"] = {"jarvis": jarvis, "llama": llama}
    r["load_averages"] = loads
    r["machine"] = machine()
    text = report(r, args)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
