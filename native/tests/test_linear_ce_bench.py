"""The fused linear + cross-entropy benchmark: a subset of variants keeps the baselines its ratios
need, and a run at a tiny size prints its table and one JSON line with a peak measured per variant."""
import argparse
import json
import subprocess
import sys

import pytest

from adopt_harness.linear_ce_bench import chosen


def test_a_variant_brings_the_baseline_of_its_ratio():
    p = argparse.ArgumentParser()
    assert chosen("kernel", p) == ["eager", "kernel"]
    assert chosen("kernel+logits", p) == ["eager+logits", "kernel+logits"]
    assert chosen("", p) == ["eager", "kernel", "eager+logits", "kernel+logits"]
    with pytest.raises(SystemExit):
        chosen("kernal", p)


def test_a_tiny_run_reports_time_and_peak_for_the_chosen_variants():
    out = subprocess.run([sys.executable, "-m", "adopt_harness.linear_ce_bench", "--tokens=64", "--hidden=16", "--vocab=300",
                          "--threads=1", "--repeats=1", "--variants=kernel"], capture_output=True, text=True, timeout=300, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert sorted(result["variants"]) == ["eager", "kernel"]
    assert result["variants"]["eager"]["time_ratio"] == 1.0
    assert all(v["seconds"] > 0 and v["peak_bytes"] >= 0 for v in result["variants"].values())
