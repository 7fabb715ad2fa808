"""jarvis-plan (engine/cluster): per-rank weight and KV bytes against the GGUF file's own tensor table
read by the PyPI `gguf` package, the model fingerprint against hashlib over the documented scheme,
and the errors a wrong split, budget or cluster file gives before anything loads."""
import hashlib
import json
import os
import struct
import subprocess
from pathlib import Path

import pytest

gguf = pytest.importorskip("gguf")

BIN = Path(os.environ.get("JARVIS_BIN_DIR", "build/bin")) / "jarvis-plan"
SRC = Path(os.environ.get("JARVIS_SOURCE_DIR", "."))
MODEL = SRC / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
EXAMPLE = SRC / "engine" / "cluster" / "examples" / "smollm2-3-local.json"

pytestmark = [
    pytest.mark.skipif(not BIN.exists(), reason=f"{BIN} not built"),
    pytest.mark.skipif(not MODEL.exists(), reason=f"{MODEL} missing (scripts/setup.sh downloads it)"),
]


def plan(*args, ok=True):
    r = subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=60)
    if ok:
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.startswith("jarvis-plan: error: "), r.stderr
    return r.stderr


@pytest.fixture(scope="module")
def reader():
    return gguf.GGUFReader(str(MODEL))


def field(reader, key):
    f = reader.fields[key]
    return int(f.parts[f.data[0]][0])


def expected_weight_bytes(reader, first, end, embedding, head, weights="native"):
    """Bytes of what a rank holds, summed over the file's tensors: natively each matrix as the file
    stores it (`gguf`'s n_bytes) and each vector as float32; under --weights f32 4 bytes each."""
    if weights == "f32":
        names = {t.name: 4 * int(t.n_elements) for t in reader.tensors}
    else:
        names = {t.name: int(t.n_bytes) if len(t.shape) >= 2 else 4 * int(t.n_elements) for t in reader.tensors}
    n = sum(v for k, v in names.items() if k.startswith("blk.") and first <= int(k.split(".")[1]) < end)
    tied = "output.weight" not in names
    if embedding or (head and tied):
        n += names["token_embd.weight"]
    if head:
        n += names["output_norm.weight"] + names.get("output.weight", 0)
    return n


def kv_block_bytes(reader, layers, page):
    heads = field(reader, "llama.attention.head_count")
    kv_heads = field(reader, "llama.attention.head_count_kv")
    head_dim = field(reader, "llama.embedding_length") // heads
    return 2 * 4 * layers * page * kv_heads * head_dim


@pytest.mark.parametrize("args", [["--ranks", "3"], ["--ranks", "4"], ["--ranks", "3", "--split", "1,28,1",
                                  "--tail-rank", "2"], ["--ranks", "2", "--split", "0,30", "--head-rank", "0"]])
@pytest.mark.parametrize("weights", ["native", "f32"])
def test_weight_bytes_match_the_files_tensors(reader, args, weights):
    out = plan("--model", str(MODEL), "--json", "--weights", weights, *args)
    assert out["layers"] == field(reader, "llama.block_count") == 30
    covered = 0
    for r in out["ranks"]:
        assert r["first_layer"] == covered
        covered = r["end_layer"]
        assert r["weight_bytes"] == expected_weight_bytes(reader, r["first_layer"], r["end_layer"], r["embedding"],
                                                          r["head"], weights), r
    assert covered == 30


def test_example_cluster_kv_fills_the_tightest_budget(reader):
    out = plan("--cluster", str(EXAMPLE), "--json", "--rank", "0")
    blocks, page = out["kv_blocks"], out["page_size"]
    assert blocks > 0 and out["this_rank"] == 0
    slack = []
    for r in out["ranks"]:
        block = kv_block_bytes(reader, r["end_layer"] - r["first_layer"], page)
        assert r["kv_bytes"] == blocks * block
        assert r["weight_bytes"] + r["kv_bytes"] <= r["budget_bytes"]
        slack.append(r["budget_bytes"] - r["weight_bytes"] - r["kv_bytes"] - block)
    assert min(slack) < 0, "one more block must not fit on the tightest rank"


def test_fingerprints_match_hashlib(reader):
    data = MODEL.read_bytes()
    size = struct.pack("<Q", len(data))
    full = plan("--model", str(MODEL), "--json", "--fingerprint", "full")
    assert full["fingerprint"] == hashlib.sha256(size + data).hexdigest()
    # Sampled: size, everything before the tensor data, 255 evenly spaced 4 KiB samples of the rest
    # and the last 4 KiB (model_identity.h).
    region = reader.data_offset
    rest = len(data) - region
    stride = (rest - 4096) // 255
    h = hashlib.sha256(size + data[:region])
    for i in range(255):
        h.update(data[region + i * stride:region + i * stride + 4096])
    h.update(data[-4096:])
    sampled = plan("--model", str(MODEL), "--json", "--fingerprint", "sampled")
    assert sampled["fingerprint"] == h.hexdigest()
    assert sampled["fingerprint_ms"] < full["fingerprint_ms"]


@pytest.mark.parametrize("args, message", [
    (["--ranks", "3", "--split", "10,10,11"], "--split sums to 31 layers but the model has 30"),
    (["--ranks", "3", "--split", "15,15"], "--split names 2 ranks but there are 3"),
    (["--ranks", "3", "--split", "10,20,0"], "rank 2 would hold no layers"),
    (["--ranks", "31"], "cannot divide 30 layers over 31 ranks"),
    (["--ranks", "3", "--tail-rank", "3"], "tail (lm_head) is placed on rank 3"),
    (["--ranks", "3", "--rank-memory", "2:100MiB", "--weights", "f32"],
     "rank 2 needs 135.04 MiB (weights 135.04 MiB for layers [20, 30), KV cache 0 B) but its memory budget is 100.00 MiB"),
    (["--ranks", "3", "--rank-memory", "2:20MiB"],
     "rank 2 needs 21.14 MiB (weights 21.14 MiB for layers [20, 30), KV cache 0 B) but its memory budget is 20.00 MiB"),
    (["--ranks", "3", "--rank-memory", "0:200MiB", "--weights", "f32"], "rank 0 needs"),
    (["--ranks", "3", "--rank-memory", "0:40MiB"], "rank 0 needs"),
    (["--ranks", "3", "--rank-memory", "5:1GiB"], "names rank 5 but ranks are 0..2"),
])
def test_wrong_plans_fail_before_loading(args, message):
    err = plan("--model", str(MODEL), *args, ok=False)
    assert message in err, err


def test_unknown_weight_format_is_refused():
    r = subprocess.run([str(BIN), "--model", str(MODEL), "--weights", "f16"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "--weights" in r.stderr, r.stderr


def test_cluster_file_errors_name_the_field(tmp_path):
    bad = json.loads(EXAMPLE.read_text())
    bad["nodes"][1]["address"] = "127.0.0.1"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    err = plan("--cluster", str(path), ok=False)
    assert f"{path}: nodes[1].address: '127.0.0.1' has no port" in err, err
    bad = json.loads(EXAMPLE.read_text())
    bad["nodes"][2]["layers"] = 11
    bad["model"] = str(MODEL.resolve())
    path.write_text(json.dumps(bad))
    assert "--split sums to 31 layers but the model has 30" in plan("--cluster", str(path), ok=False)
    err = plan("--model", str(SRC / "nonexistent.gguf"), ok=False)
    assert "nonexistent.gguf" in err
