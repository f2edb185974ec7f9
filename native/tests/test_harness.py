"""The harness library: one size table, one dropout-off, one comparison policy per dtype, one
fast-path counter, and the result schema kept current. Each check has a negative control that
shows it fails for a deliberate error."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

import adopt_kernels
from adopt_harness import schema
from adopt_harness.build import constructor_kwargs, load_as, shrink
from adopt_harness.compare import POLICIES, Comparison, policy_for, scaled_error
from adopt_harness.counting import FastPathCounter
from adopt_harness.dropout import no_dropout
from adopt_harness.protocol import results
from adopt_harness.sidebyside import compare_rewrite, reference
from adopt_harness.sizes import CONFIG_SIZES, CONSTRUCTOR_SIZES

NATIVE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_checked_in_schema_is_generated_from_the_python_definition():
    with open(schema.SCHEMA_PATH) as f:
        assert f.read() == schema.rendered(), "run: python -m adopt_harness.schema --write"


def test_every_harness_has_a_result_definition_in_the_schema():
    defs = schema.json_schema()["$defs"]
    for harness, name in schema.RESULTS.items():
        assert harness in schema.HARNESSES and name in defs


def test_one_size_table_builds_plain_modules_and_shrinks_configs_alike():
    class Config:
        def __init__(self):
            self.hidden_size, self.num_attention_heads, self.intermediate_size, self.hidden_dropout_prob = 768, 12, 3072, 0.1

    class Plain(nn.Module):
        def __init__(self, hidden_size=768, intermediate_size=3072, kernel_size=7):
            super().__init__()

    module = type(sys)("m")
    module.Plain = Plain
    module.Config = Config
    kwargs = constructor_kwargs(module, "Plain", {})
    assert kwargs == {"hidden_size": CONFIG_SIZES["hidden_size"], "intermediate_size": CONFIG_SIZES["intermediate_size"], "kernel_size": CONSTRUCTOR_SIZES["kernel_size"]}
    # sizes the caller gives (an input shape) keep the module's own defaults
    assert constructor_kwargs(module, "Plain", {}, tiny=False) == {}
    config = shrink(Config())
    assert (config.hidden_size, config.intermediate_size) == (CONFIG_SIZES["hidden_size"], CONFIG_SIZES["intermediate_size"])
    assert config.hidden_dropout_prob == 0.0


def test_dropout_off_reaches_modules_and_float_attributes():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.drop = nn.Dropout(0.5)
            self.attention_dropout = 0.3

    m = no_dropout(M())
    assert m.drop.p == 0.0 and m.attention_dropout == 0.0


@pytest.mark.parametrize("dtype", ["fp64", "fp32", "bf16"])
def test_the_dtype_policy_accepts_rounding_and_rejects_a_real_error(dtype):
    p = policy_for(dtype)
    torch.manual_seed(0)
    x = torch.randn(64, 64, dtype=torch.float64)
    rounded = x.to({"fp64": torch.float64, "fp32": torch.float32, "bf16": torch.bfloat16}[dtype]).double()
    ok = Comparison(p)
    ok.tensor("out", x, rounded)
    assert ok.problems == []
    wrong = Comparison(p)  # negative control: one value off by 5% of the largest
    bad = rounded.clone()
    bad[3, 4] += 0.05 * x.abs().max()
    wrong.tensor("out", x, bad)
    assert len(wrong.problems) == 1 and wrong.problems[0].startswith("out: max abs error")


def test_policies_are_ordered_by_precision():
    assert POLICIES["fp32"].floor > POLICIES["fp64"].floor
    assert POLICIES["bf16"].tol > POLICIES["fp16"].tol > POLICIES["fp32"].tol
    with pytest.raises(ValueError, match="no comparison policy"):
        policy_for(torch.int64)


def test_the_floor_is_scaled_by_the_largest_gradient():
    p = policy_for("fp32")
    a, b = torch.zeros(4), torch.full((4,), 1e-4)
    assert scaled_error(a, b, p) > p.tol  # unscaled: 1e-4 is over the 1e-5 floor
    assert scaled_error(a, b, p, scale=100.0) == 0.0  # next to gradients of 100 it is rounding


def test_the_counter_counts_fast_path_and_compiled_calls_and_restores_the_functions():
    before = adopt_kernels.softmax
    x = torch.randn(4, 33)
    with FastPathCounter() as c:
        adopt_kernels.softmax(x, dim=-1)
        adopt_kernels.softmax(x, dim=-1)
    assert adopt_kernels.softmax is before
    counts = c.result()
    assert counts["fast_path_calls"] == 2
    from adopt_kernels import _build
    if _build.compiler_identity(_build.compiler()) is not None:
        assert counts["compiled_kernels"] == {"softmax": 2} and counts["compiled_calls"] == 2
    # outside the block nothing is counted
    adopt_kernels.softmax(x, dim=-1)
    assert c.result()["fast_path_calls"] == 2


def test_the_counter_limited_to_a_kernel_ignores_the_others():
    with FastPathCounter("_adopt.rms_norm") as c:
        adopt_kernels.softmax(torch.randn(2, 8), dim=-1)
    assert c.result()["fast_path_calls"] == 0


def scores(dim):
    return nn.Sequential(nn.Linear(12, 12), nn.Softmax(dim))


def _side_by_side(dim):
    torch.manual_seed(0)
    a = scores(-1)
    b = scores(dim)
    b.load_state_dict(a.state_dict())
    inputs = ([torch.randn(2, 5, 12)], {})
    return compare_rewrite(b, inputs, reference(a, inputs), policy_for("fp32"))


def test_side_by_side_passes_an_equal_model_and_names_what_a_wrong_one_breaks():
    cmp, notes, timings = _side_by_side(-1)
    assert cmp.problems == [] and notes == [] and set(timings) == {"eval", "train"}
    wrong, _, _ = _side_by_side(-2)
    tags = {p.split(":")[0] for p in wrong.problems}
    assert {"eval output 0", "train output 0", "train grad of input 0", "train grad of 0.weight"} <= tags


PAIR = textwrap.dedent('''
    import torch
    from torch import nn
    try:
        import adopt_kernels as _adopt
    except ImportError:
        _adopt = None


    class Head(nn.Module):
        def __init__(self, dim=24):
            super().__init__()
            self.proj = nn.Linear(dim, dim)

        def forward(self, x):
            return SOFTMAX
''')


def _pair(tmp_path, rewritten, kernel="_adopt.softmax", **env):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text(PAIR.replace("SOFTMAX", "torch.softmax(self.proj(x), dim=-1)"))
    b.write_text(PAIR.replace("SOFTMAX", rewritten))
    p = subprocess.run([sys.executable, "-m", "adopt_harness.check_pair", str(a), str(b), "--model", "Head", "--shape", "2,3,24", "--kernel", kernel],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": NATIVE, **env}, timeout=120)
    assert p.returncode == 0, p.stderr
    [r] = results(p.stdout.splitlines())
    return r


def test_a_pair_run_verifies_a_kernel_rewrite_and_reports_its_calls(tmp_path):
    r = _pair(tmp_path, "_adopt.softmax(self.proj(x), dim=-1)")
    assert r["status"] == "verified", r
    assert r["fast_path_calls"] > 0 and r["tolerance"] == policy_for("fp32").tol


def test_a_pair_run_says_when_the_compiled_kernel_did_not_run(tmp_path):
    from adopt_kernels import _build
    rewritten = "_adopt.softmax(self.proj(x), dim=-1)"
    off = _pair(tmp_path, rewritten, ADOPT_DISABLE="native")
    assert off["status"] == "verified" and off["compiled_calls"] == 0
    assert off["notes"] == ["_adopt.softmax ran without its compiled kernel softmax (no compiler, a switch off, or a reference formulation)"]
    if _build.compiler_identity(_build.compiler()) is not None:
        on = _pair(tmp_path, rewritten)
        assert on["compiled_kernels"].get("softmax", 0) > 0 and "notes" not in on


def test_a_pair_run_that_never_calls_the_kernel_is_a_mismatch(tmp_path):
    r = _pair(tmp_path, "torch.softmax(self.proj(x), dim=-1)")
    assert r["status"] == "mismatch"
    assert r["problems"] == ["the rewritten code never called _adopt.softmax (the fast path was not taken)"]


def test_a_harness_writes_nothing_but_envelopes_on_stdout(tmp_path):
    r = _pair(tmp_path, "(print('model code prints'), _adopt.softmax(self.proj(x), dim=-1))[1]")
    assert r["status"] == "verified", r


def test_load_as_imports_a_file_as_a_fresh_module(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("X = 1\n")
    one, two = load_as(str(f), None), load_as(str(f), None)
    assert one is not two and one.X == two.X == 1


class _Weighted(nn.Module):
    """Returns (output, attention weights); `leave_out` says when the weights are given as None,
    as a rewrite's fast path gives them when nobody asked for them."""

    def __init__(self, leave_out):
        super().__init__()
        torch.manual_seed(0)
        self.proj = nn.Linear(6, 6)
        self.leave_out = leave_out

    def forward(self, x, **kwargs):
        w = torch.softmax(self.proj(x), dim=-1)
        out = w @ x.transpose(-1, -2)
        return out, (None if self.leave_out(kwargs) else w)


def _weights_case(leave_out):
    a, b = _Weighted(lambda kw: False), _Weighted(leave_out)
    inputs = ([torch.randn(2, 6, 6)], {})
    return compare_rewrite(b, inputs, reference(a, inputs), policy_for(torch.float32), original=a)


def test_weights_left_out_when_not_asked_are_checked_again_with_them_asked_for():
    cmp, notes, _ = _weights_case(lambda kw: not kw.get("output_attentions"))
    assert cmp.problems == [] and any("compared again with output_attentions=True" in n for n in notes)
    # negative control: a rewrite that leaves them out even when asked is a mismatch
    always, _, _ = _weights_case(lambda kw: True)
    assert any("with output_attentions: 2 output tensors, the rewrite returns 1" in p for p in always.problems)
    # without the original model to ask, a missing output stays a mismatch
    a, b = _Weighted(lambda kw: False), _Weighted(lambda kw: True)
    inputs = ([torch.randn(2, 6, 6)], {})
    plain, _, _ = compare_rewrite(b, inputs, reference(a, inputs), policy_for(torch.float32))
    assert any("2 output tensors, the rewrite returns 1" in p for p in plain.problems)


def test_comparisons_run_without_onednn():
    """Both sides of a comparison run with oneDNN off (Debian torch 1.13's gives Conv1d weight
    gradients that change from run to run in float32), and the setting is restored after."""
    from adopt_harness.sidebyside import run_model

    seen = []

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(3))

        def forward(self, x):
            seen.append(torch._C._get_mkldnn_enabled())
            return x * self.w

    before = torch._C._get_mkldnn_enabled()
    run_model(Probe(), ([torch.randn(2, 3)], {}), "eval")
    assert seen == [False]
    assert torch._C._get_mkldnn_enabled() == before
