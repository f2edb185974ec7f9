"""Comparison of a kernel against the plain PyTorch code it replaces."""

import copy

import torch

# Per-dtype tolerances for comparing a kernel against the plain PyTorch code it replaces. The
# kernels reorder floating-point work (folded weights, concatenated matmuls, chunked sums),
# so float32 agrees to a few ulps of O(1) values, float64 far tighter.
TOLERANCES = {
    torch.float32: dict(rtol=1e-4, atol=1e-5),
    torch.float64: dict(rtol=1e-9, atol=1e-10),
}
DTYPES = [torch.float32, torch.float64]


def assert_close(actual, expected, dtype=None, **overrides):
    tol = dict(TOLERANCES[dtype or expected.dtype])
    tol.update(overrides)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    torch.testing.assert_close(actual, expected, equal_nan=True, **tol)


def leaf(t):
    return t.detach().clone().requires_grad_(t.is_floating_point())


def as_tuple(out):
    return out if isinstance(out, tuple) else (out,)


def run(fn, inputs, modules, seed, grad_seed=1234):
    """Call ``fn(*inputs, *modules)`` and backpropagate fixed random output gradients.

    The output gradients come from a private generator so they leave the global RNG (which
    dropout draws from) untouched.
    """
    if seed is not None:
        torch.manual_seed(seed)
    outs = as_tuple(fn(*inputs, *modules))
    gen = torch.Generator().manual_seed(grad_seed)
    total = 0
    for out in outs:
        if out.requires_grad:
            g = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(out.dtype)
            total = total + (out * g).sum()
    if torch.is_tensor(total):
        total.backward()
    return outs


def compare(reference, fused, inputs, modules=(), dtype=torch.float32, seed=None, **tol):
    """Compare outputs and gradients (of inputs, module parameters and buffers afterwards).

    ``reference`` and ``fused`` take the same arguments: fresh leaf copies of ``inputs``
    followed by independent deep copies of ``modules``. Returns both runs' outputs.
    """
    ref_inputs = [leaf(t) if torch.is_tensor(t) else t for t in inputs]
    fused_inputs = [leaf(t) if torch.is_tensor(t) else t for t in inputs]
    ref_modules = [copy.deepcopy(m) for m in modules]
    fused_modules = [copy.deepcopy(m) for m in modules]

    ref_out = run(reference, ref_inputs, ref_modules, seed)
    if seed is not None:
        ref_rng = torch.get_rng_state()
    fused_out = run(fused, fused_inputs, fused_modules, seed)
    if seed is not None:
        assert torch.equal(torch.get_rng_state(), ref_rng), "kernel consumed the RNG differently"

    assert len(ref_out) == len(fused_out)
    for r, f in zip(ref_out, fused_out):
        assert_close(f, r, dtype, **tol)
    for r, f in zip(ref_inputs, fused_inputs):
        if torch.is_tensor(r) and r.requires_grad:
            assert (r.grad is None) == (f.grad is None)
            if r.grad is not None:
                assert_close(f.grad, r.grad, dtype, **tol)
    for rm, fm in zip(ref_modules, fused_modules):
        ref_params = dict(rm.named_parameters())
        fused_params = dict(fm.named_parameters())
        assert ref_params.keys() == fused_params.keys()
        for name, rp in ref_params.items():
            fp = fused_params[name]
            assert (rp.grad is None) == (fp.grad is None), name
            if rp.grad is not None:
                assert_close(fp.grad, rp.grad, dtype, **tol)
        for (name, rb), (_, fb) in zip(rm.named_buffers(), fm.named_buffers()):
            if rb.is_floating_point():
                assert_close(fb, rb, dtype, **tol)
            else:
                assert torch.equal(fb, rb), name
    return ref_out, fused_out


def sampled_schedules(space, n, seed=0):
    """The default and up to ``n`` distinct random schedules of a kernel's space."""
    import random

    rng = random.Random(seed)
    picks = [dict(space.default)] + [space.sample(rng) for _ in range(n)]
    return [dict(s) for s in {tuple(sorted(s.items())): s for s in picks}.values()]
