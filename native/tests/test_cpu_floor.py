"""The CPU size floor: calls too small to repay a compiled call's fixed cost run the torch code,
with a floor for inference (no autograd) and one for training; verification and the tuner's
measurer still run the compiled kernels at their tiny sizes."""

import json
import os

import pytest
import torch
import torch.nn as nn

import adopt_kernels as ak
from adopt_harness import crossover_bench
from adopt_harness.compare import policy_for
from adopt_harness.sidebyside import compare_rewrite, reference
from adopt_kernels import _dispatch, registry
from adopt_kernels.kernels import rms_norm as K
from adopt_kernels.registry import CpuFloors

ENV = _dispatch.CPU_MIN_BYTES_ENV
KERNEL = registry.KERNELS["rms_norm"]


@pytest.fixture
def floors(monkeypatch):
    """rms_norm with a known pair of floors (inference above training), the environment's
    override removed, and the dispatcher's messages said afresh."""
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setattr(KERNEL, "cpu_min_bytes", CpuFloors(inference=64 << 10, training=8 << 10))
    monkeypatch.setattr(_dispatch, "_said", set())
    return KERNEL.cpu_min_bytes


def _rows_moving(nbytes, n=256):
    """Rows of width ``n`` whose float32 rms_norm forward moves ``nbytes`` (2 x rows x n x 4)."""
    return max(1, nbytes // (2 * n * 4))


def _calls():
    return _dispatch.CALLS["rms_norm"]


def test_a_small_inference_call_runs_the_torch_code_and_says_so_once(floors, capsys):
    x, w = torch.randn(_rows_moving(floors.inference // 2), 256), torch.rand(256) + 0.5
    before = _calls()
    with torch.no_grad():
        assert K.rms_norm(x, w, 1e-6) is None
        got = ak.rms_norm(x, w, 1e-6)  # the public API answers through torch
        ak.rms_norm(x, w, 1e-6)
    assert _calls() == before
    torch.testing.assert_close(got, x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w)
    err = capsys.readouterr().err
    assert err.count("rms_norm: CPU calls under no_grad under 64 KiB run the torch code") == 1
    assert f"{ENV}=0" in err


def test_the_same_call_with_autograd_takes_the_training_floor(floors):
    """Between the two floors: torch under no_grad, the compiled kernel when autograd records
    (its backward gains too), forward and backward both compiled."""
    rows = _rows_moving(floors.inference // 2)
    assert floors.training <= KERNEL.bytes_moved({"rows": rows, "n": 256, "dtype": "float32"}) < floors.inference
    x = torch.randn(rows, 256, requires_grad=True)
    before = _calls()
    y = ak.rms_norm(x, None, 1e-6)
    assert _calls() == before + 1
    y.sum().backward()
    ref = x.detach().clone().requires_grad_(True)
    (ref * torch.rsqrt(ref.pow(2).mean(-1, keepdim=True) + 1e-6)).sum().backward()
    torch.testing.assert_close(x.grad, ref.grad)


def test_a_call_at_the_floor_is_compiled_and_one_below_is_not(floors):
    at = {"rows": _rows_moving(floors.inference), "n": 256, "dtype": "float32"}
    assert KERNEL.bytes_moved(at) == floors.inference
    below = dict(at, rows=at["rows"] - 1)
    with torch.no_grad():
        assert _dispatch.worth_a_call(KERNEL, at)
        assert not _dispatch.worth_a_call(KERNEL, below)


def test_workloads_under_the_floor_are_not_counted_for_tuning(floors):
    """The tuner tunes what ran compiled: a workload handed to torch needs no schedule."""
    x = torch.randn(2, 256)
    key = ("rms_norm", tuple(sorted({"rows": 2, "n": 256, "dtype": "float32"}.items())))
    before = _dispatch.WORKLOADS[key]
    with torch.no_grad():
        ak.rms_norm(x, None, 1e-6)
    assert _dispatch.WORKLOADS[key] == before


@pytest.mark.parametrize("value, compiled", [("0", True), (str(1 << 40), False)])
def test_the_environment_moves_both_floors(floors, monkeypatch, value, compiled):
    monkeypatch.setenv(ENV, value)
    tiny, big = torch.randn(1, 256), torch.randn(4096, 256, requires_grad=True)
    before = _calls()
    with torch.no_grad():
        ak.rms_norm(tiny, None, 1e-6)
    ak.rms_norm(big, None, 1e-6)
    assert _calls() - before == (2 if compiled else 0)


def test_a_floor_that_is_not_a_number_is_said_and_ignored(floors, monkeypatch, capsys):
    monkeypatch.setenv(ENV, "lots")
    with torch.no_grad():
        assert _dispatch.cpu_floor(KERNEL) == floors.inference
    assert _dispatch.cpu_floor(KERNEL, training=True) == floors.training
    assert f"{ENV}='lots' is not a number of bytes; ignored" in capsys.readouterr().err


@pytest.mark.parametrize("before", [None, "12345"])
def test_at_any_size_is_the_blocks_own_and_ends_with_it_even_after_an_error(floors, monkeypatch, before):
    import threading

    if before is not None:
        monkeypatch.setenv(ENV, before)
    tiny = {"rows": 1, "n": 8, "dtype": "float32"}
    seen_elsewhere = []
    with pytest.raises(RuntimeError):
        with _dispatch.at_any_size():
            with torch.no_grad():
                assert _dispatch.worth_a_call(KERNEL, tiny)
                with _dispatch.at_any_size():  # nested: the outer block's setting survives the inner's end
                    pass
                assert _dispatch.worth_a_call(KERNEL, tiny)
                # another thread keeps its floors
                t = threading.Thread(target=lambda: seen_elsewhere.append(_dispatch.cpu_floor(KERNEL, training=False)))
                t.start()
                t.join()
            raise RuntimeError("inside")
    assert seen_elsewhere == [float(before) if before else floors.inference]
    assert os.environ.get(ENV) == before
    with torch.no_grad():
        assert _dispatch.worth_a_call(KERNEL, tiny) == (before is not None and float(before) <= 8 * 4 * 2)


class _Tiny(nn.Module):
    """A model at verification size: its rms_norm call moves a few hundred bytes."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(16, 16)

    def forward(self, x):
        h = self.proj(x)
        return h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)


class _TinyRewritten(_Tiny):
    def forward(self, x):
        return ak.rms_norm(self.proj(x), None, 1e-6)


def test_verification_runs_the_compiled_kernel_at_its_tiny_size(floors):
    torch.manual_seed(0)
    a = _Tiny()
    b = _TinyRewritten()
    b.load_state_dict(a.state_dict())
    inputs = ((torch.randn(2, 3, 16),), {})
    # negative control: outside the comparison the floor hands this call to torch
    before = _calls()
    b(*inputs[0])
    assert _calls() == before
    cmp, _notes, _ = compare_rewrite(b, inputs, reference(a, inputs), policy_for(torch.float32))
    assert not cmp.problems
    assert _calls() > before
    assert ENV not in os.environ


def test_every_kernel_names_size_axes_among_its_workload_fields():
    for kernel in registry.KERNELS.values():
        assert kernel.size_axes, kernel.name
        assert set(kernel.size_axes) <= set(kernel.workload_fields), kernel.name


def test_the_ladder_halves_the_size_axes_down_to_one_without_repeats():
    kernel = registry.KERNELS["flash_attention"]
    base = {"batch": 1, "heads": 2, "q_len": 5, "k_len": 12, "head_dim": 8, "dtype": "float32"}
    got = crossover_bench.ladder(kernel, base, 10)
    assert [(w["q_len"], w["k_len"]) for w in got] == [(5, 12), (2, 6), (1, 3), (1, 1)]
    assert all(w["heads"] == 2 and w["head_dim"] == 8 for w in got)


def test_the_crossover_is_where_the_kernel_wins_at_every_larger_size():
    points = [{"bytes": b, "speedup_fwd": s, "speedup_fwdbwd": 2.0} for b, s in
              ((1, 0.5), (2, 1.2), (4, 0.9), (8, 1.1), (16, 1.5))]
    assert crossover_bench.crossover(points, "speedup_fwd") == 8  # the win at 2 is cut off by the loss at 4
    assert crossover_bench.crossover(points, "speedup_fwdbwd") == 1
    assert crossover_bench.crossover([dict(p, speedup_fwd=0.9) for p in points], "speedup_fwd") is None
    judged = crossover_bench.judge_floors(points, CpuFloors(inference=4, training=4))
    assert judged["inference"] == {"floor_bytes": 4, "handed_to_torch_but_faster": 1, "kept_but_slower": 1}
    assert judged["training"] == {"floor_bytes": 4, "handed_to_torch_but_faster": 2, "kept_but_slower": 0}


def test_the_crossover_benchmark_runs_and_ends_with_its_json(capsys, tmp_path):
    out = tmp_path / "x.json"
    assert crossover_bench.main(["--kernels", "rms_norm", "--steps", "2", "--repeats", "1", "--min-sample-ms", "0",
                                 "--threads", "1", "--json", str(out)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    summary = json.loads(last)
    r = summary["kernels"]["rms_norm"]
    assert set(r) == {"crossover_bytes_fwd", "crossover_bytes_fwdbwd", "inference", "training"}
    detail = json.loads(out.read_text())["detail"]["rms_norm"]["points"]
    assert [p["workload"]["rows"] for p in detail] == [2048, 1024]
    assert all(p["ours_fwd_us"] > 0 and p["eager_fwdbwd_us"] > 0 for p in detail)


def test_the_crossover_benchmark_refuses_an_unknown_kernel(capsys):
    assert crossover_bench.main(["--kernels", "nope"]) == 2
    assert "unknown kernel(s) nope" in capsys.readouterr().err


def _tiny_calls():
    """Each public API at a decode-sized call, the kernel-module entry it reaches when the
    compiled path is tried, and the eager code it replaces."""
    torch.manual_seed(0)
    x, r = torch.randn(1, 1, 64), torch.randn(1, 1, 64)
    ln, w = nn.LayerNorm(64), torch.rand(64) + 0.5
    q, k = torch.randn(1, 4, 1, 16), torch.randn(1, 4, 1, 16)
    cos, sin = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)
    kk, vv, mask = torch.randn(1, 4, 9, 16), torch.randn(1, 4, 9, 16), torch.zeros(1, 1, 1, 9)
    lin = nn.Linear(64, 96)
    gate, up = torch.randn(1, 1, 96), torch.randn(1, 1, 96)

    def rot(t):
        return torch.cat((-t[..., 8:], t[..., :8]), -1)

    return [
        ("rms_norm", "adopt_kernels.kernels.rms_norm", "rms_norm", lambda: ak.rms_norm(x, w, 1e-6),
         lambda: w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))),
        ("layer_norm", "adopt_kernels.kernels.layer_norm", "dropout_add_layer_norm",
         lambda: ak.dropout_add_layer_norm(x, r, ln, 0.1, False), lambda: ln(x + r)),
        ("rope", "adopt_kernels.kernels.rope", "rope", lambda: ak.apply_rope(q, k, cos, sin, unsqueeze_dim=None),
         lambda: (q * cos + rot(q) * sin, k * cos + rot(k) * sin)),
        ("softmax", "adopt_kernels.kernels.softmax", "softmax", lambda: ak.softmax(kk), lambda: torch.softmax(kk, -1)),
        ("attention", "adopt_kernels._impl.attention", "_compiled",
         lambda: ak.attention(q, kk, vv, mask=mask, scale=0.25, mask_added=True),
         lambda: torch.softmax(q @ kk.transpose(-1, -2) * 0.25 + mask, -1) @ vv),
        ("bias_gelu", "adopt_kernels.kernels.bias_gelu", "linear_gelu", lambda: ak.linear_gelu(x, lin),
         lambda: torch.nn.functional.gelu(lin(x))),
        ("gated_act", "adopt_kernels.kernels.gated_act", "gated_act", lambda: ak.gated_act(gate, up, nn.SiLU()),
         lambda: torch.nn.functional.silu(gate) * up),
    ]


@pytest.mark.parametrize("index", range(7))
def test_a_tiny_call_goes_to_torch_before_the_kernels_checks(index, monkeypatch):
    """Below the floor the API runs its torch code without reaching the kernel module at all
    (its checks cost as much as the torch code at a decoded token); with the floor at 0 the
    same call reaches it (the negative control)."""
    import importlib

    name, module, entry, api, eager = _tiny_calls()[index]
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setattr(_dispatch, "_said", set())
    reached = []
    real = getattr(importlib.import_module(module), entry)
    monkeypatch.setattr(importlib.import_module(module), entry, lambda *a, **kw: reached.append(1) or real(*a, **kw))
    with torch.no_grad():
        got = api()
        assert not reached, name
        torch.testing.assert_close(got, eager())
        monkeypatch.setenv(ENV, "0")
        torch.testing.assert_close(api(), eager())
    assert reached, name


def test_few_rows_run_the_projections_as_written_and_many_rows_stack(monkeypatch):
    from adopt_kernels._impl import projections

    monkeypatch.delenv(ENV, raising=False)
    stacked = []
    real = projections._stacked
    monkeypatch.setattr(projections, "_stacked", lambda layers: stacked.append(len(layers)) or real(layers))
    torch.manual_seed(0)
    q, k, v = (nn.Linear(16, 16) for _ in range(3))
    gate, upp, down = nn.Linear(16, 24), nn.Linear(16, 24), nn.Linear(24, 16)
    few, many = torch.randn(1, projections.STACK_MIN_ROWS - 1, 16), torch.randn(1, projections.STACK_MIN_ROWS, 16)
    # with autograd on: inference never stacks (test_projections.py)
    for x in (few, many):
        torch.testing.assert_close(ak.fused_qkv(x, q, k, v), (q(x), k(x), v(x)))
        torch.testing.assert_close(ak.gated_mlp(x, gate, upp, down, nn.SiLU()), down(torch.nn.functional.silu(gate(x)) * upp(x)))
        if x is few:
            assert stacked == []
    assert stacked == [3, 2]
    # verification forces every size through the stacked path it checks
    monkeypatch.setenv(ENV, "0")
    ak.fused_qkv(few[:, :1], q, k, v)
    assert stacked == [3, 2, 3]


def test_a_call_with_dropout_takes_one_path_in_both_passes_of_reentrant_checkpointing(monkeypatch):
    """Reentrant checkpointing runs the forward without grad and recomputes it with: a LayerNorm
    call with dropout between the two floors must take the same path both times, or the
    recomputation draws another mask than the one the loss was computed with."""
    from torch.utils.checkpoint import checkpoint

    ln_kernel = registry.KERNELS["layer_norm"]
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setattr(ln_kernel, "cpu_min_bytes", CpuFloors(inference=1 << 30, training=1 << 10))
    ln = nn.LayerNorm(64)
    x0, r = torch.randn(2, 8, 64), torch.randn(2, 8, 64)

    def grads(checkpointed):
        x = x0.clone().requires_grad_(True)
        torch.manual_seed(7)
        fn = lambda t: ak.dropout_add_layer_norm(t, r, ln, 0.3, True)  # noqa: E731
        y = checkpoint(fn, x, use_reentrant=True) if checkpointed else fn(x)
        (y * torch.arange(64.0)).sum().backward()
        return y.detach(), x.grad

    plain, again = grads(False), grads(True)
    torch.testing.assert_close(again[0], plain[0])
    torch.testing.assert_close(again[1], plain[1])
    # negative control: a floor chosen by grad mode alone sends the first pass to F.dropout and
    # the recomputation to the kernel: the output comes from one mask, its gradient from another
    real = _dispatch.cpu_floor
    monkeypatch.setattr(_dispatch, "cpu_floor", lambda kernel, training=None: real(kernel, None))
    broken = grads(True)
    assert not torch.allclose(broken[0], plain[0])
    torch.testing.assert_close(broken[1], plain[1])


def test_the_dropout_mask_helper_runs_below_the_floor(floors, monkeypatch):
    from adopt_kernels.kernels import layer_norm

    monkeypatch.setattr(registry.KERNELS["layer_norm"], "cpu_min_bytes", CpuFloors(inference=1 << 30, training=1 << 30))
    keep = layer_norm.keep_factors(1, 64, 0.5, seed=3)
    assert keep is not None and keep.shape == (1, 64)
    assert set(keep.unique().tolist()) <= {0.0, 2.0}


def test_the_tuners_measurer_and_the_kernel_benchmark_run_the_kernels_below_the_floor(floors, capsys):
    from adopt_harness import kernels_bench, measure

    request = {"op": "measure", "kernel": "rms_norm", "workload": {"rows": 2, "n": 64, "dtype": "float32"},
               "schedules": [dict(KERNEL.space.default)], "timeout_s": 60, "repeats": 1, "warmup": 1}
    assert ENV not in os.environ
    out = measure.measure(request)
    assert [r["status"] for r in out["results"]] == ["ok"], out
    assert kernels_bench.main(["--kernels", "rms_norm", "--workload", '{"rows": 2, "n": 64, "dtype": "float32"}', "--sample", "0",
                               "--repeats", "1", "--threads", "1"]) == 0
    assert '"rms_norm"' in capsys.readouterr().out.strip().splitlines()[-1]


def test_one_query_row_without_autograd_goes_to_torch_at_any_length(monkeypatch, capsys):
    """A decoded token's attention has nothing to fuse away (its keys and values stream once
    either way): torch takes it under no_grad however long the cache, with its own message. Two
    rows of the same cache, or one row that autograd records, are above the floors and compiled;
    with the floor at 0 the one row is compiled too (verification)."""
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setattr(_dispatch, "_said", set())
    k, v, mask = torch.randn(1, 8, 4096, 64), torch.randn(1, 8, 4096, 64), torch.zeros(1, 1, 1, 4096)
    floor = _dispatch.cpu_floor(registry.KERNELS["flash_attention"], training=False)
    assert 2 * 4 * (8 * 64 + 8 * 4096 * 64) > 4 * floor  # far above the size floor

    def compiled(q, grad=False):
        before = _dispatch.CALLS["flash_attention"]
        with torch.set_grad_enabled(grad):
            out = ak.attention(q, k, v, mask=mask, scale=0.125, mask_added=True)
        want = torch.softmax(q @ k.transpose(-1, -2) * 0.125 + mask, -1) @ v
        torch.testing.assert_close(out, want, rtol=1e-4, atol=1e-5)
        return _dispatch.CALLS["flash_attention"] > before

    one, two = torch.randn(1, 8, 1, 64), torch.randn(1, 8, 2, 64)
    assert not compiled(one)
    assert not compiled(one)
    assert compiled(two)
    assert compiled(one.requires_grad_(), grad=True)
    err = capsys.readouterr().err
    assert err.count("flash_attention: CPU calls under no_grad of one query row (a decoded token) run the torch code") == 1
    with _dispatch.at_any_size():  # verification
        assert compiled(one.detach())
    monkeypatch.setenv(ENV, "0")
    assert compiled(one.detach())


def test_the_decode_ladder_holds_the_query_rows_and_halves_the_keys(capsys, tmp_path):
    kernel = registry.KERNELS["flash_attention"]
    base = {"batch": 1, "heads": 2, "q_len": 4, "k_len": 40, "head_dim": 8, "dtype": "float32"}
    assert [(w["q_len"], w["k_len"]) for w in crossover_bench.ladder(kernel, base, 3, ["k_len"])] == [(4, 40), (4, 20), (4, 10)]
    out = tmp_path / "x.json"
    assert crossover_bench.main(["--kernels", "flash_attention", "--workload", json.dumps(base), "--axes", "k_len",
                                 "--steps", "2", "--repeats", "1", "--min-sample-ms", "0", "--threads", "1", "--json", str(out)]) == 0
    points = json.loads(out.read_text())["detail"]["flash_attention"]["points"]
    assert [(p["workload"]["q_len"], p["workload"]["k_len"]) for p in points] == [(4, 40), (4, 20)]


def test_one_query_row_without_autograd_is_judged_as_handed_to_torch_at_any_size():
    kernel = registry.KERNELS["flash_attention"]
    row = {"workload": {"q_len": 1}, "bytes": 1 << 30, "speedup_fwd": 1.2, "speedup_fwdbwd": 1.2}
    rows = dict(row, workload={"q_len": 2})
    floors = CpuFloors(inference=1 << 20, training=1 << 20)
    judged = crossover_bench.judge_floors([row, rows], floors, kernel)
    assert judged["inference"]["handed_to_torch_but_faster"] == 1  # the one row, however large
    assert judged["training"]["handed_to_torch_but_faster"] == 0
    assert crossover_bench.judge_floors([row, rows], floors)["inference"]["handed_to_torch_but_faster"] == 0  # no kernel: the floor alone


@pytest.mark.parametrize("args,message", [
    (["--kernels", "rms_norm,rope", "--workload", "{}"], "name that kernel alone"),
    (["--kernels", "flash_attention", "--workload", "{nope"], "--workload is not JSON"),
    (["--kernels", "flash_attention", "--workload", '{"batch": 1}'], "--workload lacks heads, q_len"),
    (["--kernels", "flash_attention", "--workload", "[1]"], "--workload lacks batch"),
    (["--kernels", "flash_attention", "--axes", "k_len,rows"], "flash_attention has no size axis rows"),
    (["--kernels", "flash_attention", "--axes", "dtype"], "flash_attention has no size axis dtype"),
    (["--kernels", "flash_attention", "--workload", '{"batch": 1, "heads": 2, "q_len": "4", "k_len": 8, "head_dim": 8, "dtype": "float32"}'],
     "flash_attention has no size axis q_len"),
])
def test_the_crossover_benchmark_refuses_a_workload_or_axes_that_do_not_fit(args, message, capsys):
    assert crossover_bench.main(args) == 2
    assert message in capsys.readouterr().err
