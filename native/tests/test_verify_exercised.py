"""What a file run proves: float64 under a tolerance an activation change cannot hide in, a class
that never ran the rewrite's own code marked as not exercised, labels fed to a forward that takes
them, and a float32 pass (with --kernels) in which the compiled kernels run."""
import os
import subprocess
import sys
import textwrap

from adopt_harness.protocol import results

NATIVE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MLP = textwrap.dedent('''
    import torch
    from torch import nn
    import torch.nn.functional as F


    class GatedMLP(nn.Module):
        def __init__(self, hidden_size=64, intermediate_size=128):
            super().__init__()
            self.gate = nn.Linear(hidden_size, intermediate_size, bias=False)
            self.up = nn.Linear(hidden_size, intermediate_size, bias=False)
            self.down = nn.Linear(intermediate_size, hidden_size, bias=False)

        def forward(self, x):
            return self.down(F.gelu(self.gate(x), approximate="tanh") * self.up(x))
''')

LM = textwrap.dedent('''
    import torch
    from torch import nn
    import torch.nn.functional as F


    class TinyLM(nn.Module):
        def __init__(self, vocab=50, dim=16):
            super().__init__()
            self.emb = nn.Embedding(vocab, dim)
            self.head = nn.Linear(dim, vocab, bias=False)

        def forward(self, idx, targets=None):
            logits = self.head(self.emb(idx))
            loss = None
            if targets is not None:
                loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
            return logits, loss


    def train(model):
        return torch.optim.AdamW(model.parameters(), lr=1e-3)
''')

NORM = textwrap.dedent('''
    import torch
    from torch import nn


    class Norm(nn.Module):
        def __init__(self, dim=32):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(dim))

        def forward(self, x):
            y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
            return self.weight * y
''')


def run(tmp_path, original, rewritten, *extra):
    a = tmp_path / "orig.py"
    b = tmp_path / "rewritten.py"
    a.write_text(original)
    b.write_text(rewritten)
    p = subprocess.run([sys.executable, "-m", "adopt_harness.verify_file", str(a), "--variant", f"v={b}", *extra],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": NATIVE}, timeout=300)
    assert p.returncode == 0, p.stderr
    [out] = results(p.stdout.splitlines())
    return {r.get("class"): r for r in out["results"]}


def test_exact_gelu_for_tanh_gelu_is_a_mismatch_in_float64(tmp_path):
    wrong = MLP.replace('F.gelu(self.gate(x), approximate="tanh")', "F.gelu(self.gate(x))")
    r = run(tmp_path, MLP, wrong, "--dtype", "fp64")["GatedMLP"]
    assert r["status"] == "mismatch", r
    assert any("tolerance 1e-05 in fp64" in p for p in r["problems"])


def test_an_equivalent_float64_rewrite_stays_far_below_the_tolerance(tmp_path):
    # the same function, reassociated: what a correct rewrite changes in float64
    same = MLP.replace('self.down(F.gelu(self.gate(x), approximate="tanh") * self.up(x))',
                       'self.down(self.up(x) * (0.5 * self.gate(x) * (1 + torch.tanh(0.7978845608028654 * (self.gate(x) + 0.044715 * self.gate(x) ** 3)))))')
    assert same != MLP
    r = run(tmp_path, MLP, same, "--dtype", "fp64")["GatedMLP"]
    assert r["status"] == "verified", r
    assert r["max_rel"] < 1e-10


def test_a_rewrite_only_in_the_loss_branch_is_exercised_with_targets_fed(tmp_path):
    rewritten = LM.replace("F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))",
                           "F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))")
    r = run(tmp_path, LM, rewritten)["TinyLM"]
    assert r["status"] == "verified", r
    assert "with targets" in r["inputs"]
    assert r["exercised"] is True


def test_a_wrong_loss_rewrite_is_caught_through_the_targets(tmp_path):
    wrong = LM.replace("targets.view(-1))", "targets.view(-1), label_smoothing=0.1)")
    r = run(tmp_path, LM, wrong)["TinyLM"]
    assert r["status"] == "mismatch"
    assert all(p.startswith("with targets: ") for p in r["problems"])


def test_a_rewrite_no_class_runs_is_not_exercised(tmp_path):
    rewritten = LM.replace("torch.optim.AdamW(model.parameters(), lr=1e-3)", "torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=False)")
    assert rewritten != LM
    r = run(tmp_path, LM, rewritten)["TinyLM"]
    assert r["status"] == "verified"
    assert r["exercised"] is False


def test_a_fast_path_rewrite_is_exercised_when_its_kernel_is_called_and_its_kernels_run_in_float32(tmp_path):
    body = "        y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)\n        return self.weight * y"
    assert body in NORM
    rewritten = ("try:\n    import adopt_kernels as _adopt\nexcept ImportError:\n    _adopt = None\n" + NORM).replace(
        body, "        if _adopt is not None and _adopt.enabled('rms_norm'):\n            return _adopt.rms_norm(x, self.weight, 1e-6)\n" + body)
    r = run(tmp_path, NORM, rewritten, "--dtype", "fp64", "--kernels")["Norm"]
    assert r["status"] == "verified", r
    assert r["exercised"] is True and r["fast_path_calls"] > 0
    # float64 runs the torch code the kernel replaces; the float32 pass runs the compiled kernel
    assert r["kernel_pass"]["status"] == "verified" and r["kernel_pass"]["dtype"] == "fp32"
    assert r["kernel_pass"]["compiled_calls"] > 0 and r["compiled_calls"] == r["kernel_pass"]["compiled_calls"]
    switched_off = run(tmp_path, NORM, rewritten.replace("_adopt.enabled('rms_norm')", "False"), "--dtype", "fp64")["Norm"]
    # the guard ran, the kernel did not: nothing of the rewrite was checked
    assert switched_off["status"] == "verified" and switched_off["exercised"] is False


def test_a_file_that_exits_when_imported_is_reported_with_the_exit(tmp_path):
    a = tmp_path / "orig.py"
    a.write_text(NORM + "\nimport sys\nsys.exit(3)\n")
    p = subprocess.run([sys.executable, "-m", "adopt_harness.verify_file", str(a), "--variant", f"v={a}"],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": NATIVE}, timeout=120)
    assert p.returncode == 0, p.stderr
    [out] = results(p.stdout.splitlines())
    assert out["error"].endswith("it calls sys.exit(3) when imported")


def test_a_rewrite_exact_in_float64_but_less_accurate_in_float32_is_a_mismatch_in_the_float32_pass(tmp_path):
    """The float32 pass lets a tensor over the tolerance pass only where the original is itself
    as far from float64 (compare.OWN_ERROR_FACTOR); a rewrite that loses precision the original
    keeps is still caught (the negative control of that allowance)."""
    body = "        return self.weight * y"
    assert body in NORM
    lossy = NORM.replace(body, "        return self.weight * ((y + 1048576.0) - 1048576.0)")
    r = run(tmp_path, NORM, lossy, "--dtype", "fp64", "--kernels")["Norm"]
    assert r["status"] == "mismatch", r
    assert any(p.startswith("float32 (compiled kernels): ") and "the original's own error there against float64" in p for p in r["problems"]), r["problems"]
