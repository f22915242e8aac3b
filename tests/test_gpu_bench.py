"""The GPU run script starts and writes its rows without CUDA (tiny fp32 sizes, CUDA-only rows marked skipped)."""
from __future__ import annotations

import json

from benchmarks.gpu_bench import main


def test_gpu_bench_runs_on_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    assert main(["--out", str(out), "--tiny"]) == 0
    res = json.loads(out.read_text())
    assert res["dtype"] == "torch.float32" and res["compile"] is False
    assert any("needs CUDA" in r.get("skipped", "") for r in res["rows"])
    timed = [r for r in res["rows"] if "encoder_tokens_per_s" in r]
    assert [r["tokens"] for r in timed] == [2 * 125 * 4, 4 * 125 * 2]  # batch × channels × (n_times // 50)
    assert all(r["encoder_tokens_per_s"] > 0 and 0 < r["encoder_pct_of_matmul_peak"] for r in timed)
    assert timed[1]["align_step_samples_per_s"] > 0 and timed[0]["encoder_gflop_per_step"] > 0
