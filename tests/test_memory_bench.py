"""Smoke run of ``benchmarks/memory_bench.py --quick``: it runs, prints its table and writes
JSON whose numbers are consistent. The real run's numbers are in benchmarks/results/."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_quick_benchmark_writes_a_consistent_report(tmp_path):
    out = tmp_path / "bench.json"
    completed = subprocess.run(
        [sys.executable, "benchmarks/memory_bench.py", "--quick", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "brute_force" in completed.stdout and "episodic" in completed.stdout
    report = json.loads(out.read_text())
    assert not list(tmp_path.glob("*.tmp"))
    rows = report["results"]
    kinds = {(r["n"], r["kind"]) for r in rows}
    assert kinds == {(n, k) for n in (1000, 5000)
                     for k in ("brute_force", "flat", "hnsw", "ivf", "auto")}
    for row in rows:
        assert 0.0 <= row["recall_at_10"] <= 1.0
        assert 0 < row["single"]["p50_ms"] <= row["single"]["p99_ms"]
        assert row["bytes_per_vector"] >= row["dim"] * 4
        if row["kind"] == "flat":
            assert row["recall_at_10"] == 1.0 and row["same_neighbours_as_brute_force"] == 1.0
    assert {r["index_kind"] for r in report["episodic"]} == {"flat", "hnsw"}
    assert report["targets"]["exact_equals_brute_force_and_not_slower"]["rows"]
