"""The file-mode harness on bad input: every failure is a per-class result with its reason, the
run goes on to the next class, and a rewrite that fails where the original runs is a mismatch."""
import os
import subprocess
import sys
import textwrap

import pytest

from adopt_harness.protocol import results

NATIVE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

GOOD = textwrap.dedent('''
    import torch
    from torch import nn


    class Block(nn.Module):
        def __init__(self, dim=16):
            super().__init__()
            self.proj = nn.Linear(dim, dim)

        def forward(self, x):
            return torch.softmax(self.proj(x), dim=-1)
''')


def run(tmp_path, original, rewritten, *extra, timeout_s=None):
    a = tmp_path / "orig.py"
    b = tmp_path / "rewritten.py"
    a.write_text(original)
    b.write_text(rewritten)
    env = {**os.environ, "PYTHONPATH": NATIVE}
    if timeout_s:
        env["ADOPT_VERIFY_TIMEOUT"] = str(timeout_s)
    p = subprocess.run([sys.executable, "-m", "adopt_harness.verify_file", str(a), "--variant", f"v={b}", *extra],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    [out] = results(p.stdout.splitlines())
    return {**{r.get("class"): r for r in out["results"]}, **({"error": out["error"]} if "error" in out else {})}


def test_an_exact_rewrite_verifies_with_timings(tmp_path):
    r = run(tmp_path, GOOD, GOOD.replace("torch.softmax(self.proj(x), dim=-1)", "nn.functional.softmax(self.proj(x), -1)"), "--repeats", "3")
    assert r["Block"]["status"] == "verified"
    assert r["Block"]["strict_load"] is True
    assert r["Block"]["timings"]["forward"]["original_s"] > 0
    assert r["Block"]["timings"]["train"]["ratio"] > 0


def test_a_wrong_rewrite_is_a_mismatch_naming_the_output(tmp_path):
    r = run(tmp_path, GOOD, GOOD.replace("dim=-1", "dim=-2"))
    assert r["Block"]["status"] == "mismatch"
    assert any(p.startswith("eval output 0") for p in r["Block"]["problems"])


def test_a_class_that_cannot_be_built_is_not_runnable_and_the_next_class_still_runs(tmp_path):
    src = GOOD + textwrap.dedent('''

        class NeedsWidget(nn.Module):
            def __init__(self, widget):
                super().__init__()

            def forward(self, x):
                return x
    ''')
    r = run(tmp_path, src, src)
    assert r["NeedsWidget"]["status"] == "not_runnable"
    assert "no value for its parameter 'widget'" in r["NeedsWidget"]["reason"]
    assert r["Block"]["status"] == "verified"


def test_a_file_that_imports_a_missing_package_is_reported(tmp_path):
    missing = "import adopt_no_such_package\n" + GOOD
    r = run(tmp_path, missing, missing)
    assert "cannot import" in r["error"] and "adopt_no_such_package" in r["error"]
    # the original imports, the rewrite does not: the rewrite is wrong
    r = run(tmp_path, GOOD, missing)
    assert r[None]["status"] == "mismatch"
    assert "does not import" in r[None]["problems"][0]


def test_a_rewrite_that_raises_where_the_original_runs_is_a_mismatch(tmp_path):
    raising = GOOD.replace("return torch.softmax(self.proj(x), dim=-1)", "raise ValueError('broken rewrite')")
    r = run(tmp_path, GOOD, raising)
    assert r["Block"]["status"] == "mismatch"
    assert "the rewritten model raises where the original runs: ValueError: broken rewrite" in r["Block"]["problems"][0]


def test_an_infinite_loop_times_out_and_the_run_goes_on(tmp_path):
    src = GOOD + textwrap.dedent('''

        class Spins(nn.Module):
            def __init__(self, dim=16):
                super().__init__()
                self.proj = nn.Linear(dim, dim)

            def forward(self, x):
                while True:
                    x = x + 0
    ''')
    r = run(tmp_path, src, src, timeout_s=2)
    assert r["Spins"]["status"] == "not_runnable"
    assert r["Spins"]["reason"] == "timed out after 2s"
    assert r["Block"]["status"] == "verified"


def test_out_of_memory_is_reported_per_class(tmp_path):
    src = GOOD + textwrap.dedent('''

        class Hungry(nn.Module):
            def __init__(self, dim=16):
                super().__init__()
                self.proj = nn.Linear(dim, dim)

            def forward(self, x):
                return self.proj(x) + torch.empty(1 << 50).sum()
    ''')
    r = run(tmp_path, src, src)
    assert r["Hungry"]["status"] == "not_runnable"
    assert "alloc" in r["Hungry"]["reason"].lower() or "memory" in r["Hungry"]["reason"].lower()
    assert r["Block"]["status"] == "verified"


@pytest.mark.parametrize("dtype", ["fp32", "fp64"])
def test_dtype_is_honoured(tmp_path, dtype):
    r = run(tmp_path, GOOD, GOOD, "--dtype", dtype)
    assert r["Block"]["status"] == "verified"


SWITCHED = textwrap.dedent('''
    import torch
    from torch import nn


    class Mixer(nn.Module):
        def __init__(self, dim=16, over_tokens=False, bias=True):
            super().__init__()
            self.proj = nn.Linear(dim, dim, bias=bias)
            self.dim = 1 if over_tokens else -1

        def forward(self, x):
            return torch.softmax(self.proj(x), dim=self.dim)
''')


def test_a_rewrite_right_only_for_the_default_switch_is_a_mismatch_naming_the_switch(tmp_path):
    r = run(tmp_path, SWITCHED, SWITCHED.replace("dim=self.dim)", "dim=-1)"))
    assert r["Mixer"]["status"] == "mismatch"
    assert any(p.startswith("with over_tokens=True: ") for p in r["Mixer"]["problems"]), r["Mixer"]["problems"]
    assert not any("bias=False" in p for p in r["Mixer"]["problems"])


def test_a_rewrite_right_for_every_switch_verifies(tmp_path):
    r = run(tmp_path, SWITCHED, SWITCHED.replace("torch.softmax(self.proj(x), dim=self.dim)", "self.proj(x).softmax(self.dim)"))
    assert r["Mixer"]["status"] == "verified", r["Mixer"]


def test_a_switch_the_original_cannot_run_is_left_out_with_a_note(tmp_path):
    src = SWITCHED.replace("self.dim = 1 if over_tokens else -1", "self.dim = -1\n        assert not over_tokens, 'not supported'")
    r = run(tmp_path, src, src)
    assert r["Mixer"]["status"] == "verified"
    assert any("not compared with over_tokens=True" in n for n in r["Mixer"].get("notes", [])), r["Mixer"]


def test_a_switch_is_checked_without_moving_the_originals_running_statistics(tmp_path):
    """The probe that the original runs with a switch flipped runs on a copy: a training-mode
    forward moves BatchNorm's running statistics, and the twins must meet the comparison alike."""
    src = textwrap.dedent('''
        import torch
        from torch import nn


        class Net(nn.Module):
            def __init__(self, width=8, unused_flag=True):
                super().__init__()
                self.conv = nn.Conv2d(3, width, 3, padding=1, bias=False)
                self.bn = nn.BatchNorm2d(width)

            def forward(self, x):
                return self.bn(self.conv(x)).mean((2, 3))
    ''')
    r = run(tmp_path, src, src.replace("self.bn(self.conv(x))", "nn.functional.batch_norm(self.conv(x), self.bn.running_mean, self.bn.running_var, self.bn.weight, self.bn.bias, self.bn.training, self.bn.momentum, self.bn.eps)"))
    assert r["Net"]["status"] == "verified", r["Net"]


def test_a_switch_that_hangs_is_left_out_and_the_default_verdict_stands(tmp_path):
    src = SWITCHED.replace("self.dim = 1 if over_tokens else -1", "self.dim = -1\n        self.slow = over_tokens").replace(
        "        return torch.softmax(self.proj(x), dim=self.dim)",
        "        while self.slow:\n            pass\n        return torch.softmax(self.proj(x), dim=self.dim)")
    r = run(tmp_path, src, src, timeout_s=3)
    assert r["Mixer"]["status"] == "verified", r["Mixer"]
    assert any("not compared with over_tokens=True or later switches: out of time" in n for n in r["Mixer"].get("notes", [])), r["Mixer"]
