"""The compiled kernels inside torch's autograd machinery, on their compiled paths (conftest
forces them at any size): under ``torch.autocast`` (the kernel chosen for the dtype of the
product actually computed, never reading a buffer as another dtype; the logits of linear + cross
entropy in the dtype eager code gives), under non-reentrant gradient checkpointing (every
Function's saved tensors unpack), and second-order gradients (``create_graph``: a gradient
penalty) against eager torch in float64, with negative controls showing each check catches the
defect it is there for."""

import pytest
import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from torch import nn

import adopt_kernels as ak
from adopt_kernels import _dispatch
from adopt_kernels.kernels import _common
from adopt_kernels.kernels import bias_gelu as BG
from adopt_kernels.kernels import flash_attention as FA
from adopt_kernels.kernels import gated_act as GA
from adopt_kernels.kernels import layer_norm as LN
from adopt_kernels.kernels import linear_ce as CE
from adopt_kernels.kernels import linear_ce_logits as CEL
from adopt_kernels.kernels import rms_norm as RN
from adopt_kernels.kernels import rope as RO
from adopt_kernels.kernels import softmax as SM

BF16 = torch.bfloat16


def randn(*shape, seed=0, scale=1.0):
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def autocast():
    return torch.autocast("cpu", dtype=BF16)


# ---------------------------------------------------------------- autocast (D1, D7)


def _linear_gelu_case():
    x = randn(2, 5, 24, seed=1)
    w = randn(40, 24, seed=2, scale=0.2)
    b = randn(40, seed=3, scale=0.5)
    return x, w, b


def _leaves(*tensors):
    return [t.detach().clone().requires_grad_(True) for t in tensors]


def _close_in_bf16(actual, expected, what):
    """Within a few bfloat16 steps of the eager autocast result (the kernel adds the bias after the
    product rounds, the eager addmm before)."""
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    err = (actual.double() - expected.double()).abs().max().item()
    assert err <= 0.05 * max(1.0, expected.double().abs().max().item()), f"{what}: max abs error {err:.3g}"


@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "training"])
def test_linear_gelu_under_autocast_runs_the_kernel_of_the_products_dtype(grad):
    """Under autocast F.linear returns bfloat16 from float32 inputs: the kernel must be the
    bfloat16 one (the float32 one read and wrote past the bfloat16 buffer: NaNs, crashes), the
    output bfloat16 as the eager code's, and the float32 leaves get float32 gradients."""
    x, w, b = _linear_gelu_case()
    ours, theirs = _leaves(x, w, b), _leaves(x, w, b)
    dy = randn(2, 5, 40, seed=4)
    before = _dispatch.CALLS["bias_gelu"]
    with autocast(), torch.set_grad_enabled(grad):
        out = BG.linear_gelu(*ours)
        ref = F.gelu(F.linear(*theirs))
    assert _dispatch.CALLS["bias_gelu"] == before + 1
    _close_in_bf16(out, ref, "output")
    assert not out.float().isnan().any()
    if grad:
        out.backward(dy.to(out.dtype))
        ref.backward(dy.to(ref.dtype))
        for name, a, e in zip(("x", "weight", "bias"), ours, theirs):
            assert a.grad.dtype == torch.float32
            _close_in_bf16(a.grad, e.grad, f"grad {name}")


def test_linear_gelu_with_a_frozen_weight_keeps_what_f_linear_keeps():
    """With the weight frozen F.linear's backward keeps the weight, not x: changing x in place
    after the call is no error in eager code, nor here; a create_graph backward, which would need
    x, is refused with the remedy instead of reading a changed x."""
    x, w, b = _linear_gelu_case()
    leaf = x.clone().requires_grad_(True)
    h = leaf * 1.0
    y = BG.linear_gelu(h, w, b)
    h.add_(1.0)
    y.sum().backward()
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all()
    h = leaf * 1.0
    y = BG.linear_gelu(h, w, b)
    with pytest.raises(RuntimeError, match="ADOPT_DISABLE=linear_gelu"):
        torch.autograd.grad(y.pow(2).sum(), (leaf,), create_graph=True)


def test_linear_gelu_public_api_under_autocast():
    x, w, b = _linear_gelu_case()
    linear = nn.Linear(24, 40)
    with torch.no_grad():
        linear.weight.copy_(w)
        linear.bias.copy_(b)
    with autocast():
        out, ref = ak.linear_gelu(x, linear), F.gelu(linear(x))
    _close_in_bf16(out, ref, "output")


def test_negative_control_a_kernel_chosen_for_the_inputs_dtype_never_reads_the_product(monkeypatch):
    """With the dtype check defeated (operands handed on as float32 while autocast makes the
    product bfloat16, the audited defect), the product must still not reach the float32 kernel:
    the torch formulation takes it, and the result is right."""
    monkeypatch.setattr(BG, "product_operands", lambda *t: t)
    x, w, b = _linear_gelu_case()
    before = _dispatch.CALLS["bias_gelu"]
    with autocast(), torch.no_grad():
        out, ref = BG.linear_gelu(x, w, b), F.gelu(F.linear(x, w, b))
    assert _dispatch.CALLS["bias_gelu"] == before  # the kernel did not run on the bfloat16 product
    _close_in_bf16(out, ref, "output")


def _head_case(bias=True):
    head = nn.Linear(32, 97, bias=bias)
    hidden = randn(2, 6, 32, seed=5)
    labels = torch.randint(0, 97, (2, 6), generator=torch.Generator().manual_seed(6))
    labels[0, 3] = -100
    return head, hidden, labels


def test_linear_cross_entropy_logits_under_autocast_have_the_eager_dtype():
    """The logits returned beside the loss are what the head gives under autocast (bfloat16),
    the per-row losses those of cross entropy over them, and the float32 parameters' gradients
    float32 and near eager's."""
    head, hidden, labels = _head_case()
    targets = CE.targets_for(labels.view(-1), -100, 97)
    h1, h2 = _leaves(hidden.view(-1, 32), hidden.view(-1, 32))
    heads = [nn.Linear(32, 97) for _ in range(2)]
    for hd in heads:
        hd.load_state_dict(head.state_dict())
    with autocast():
        losses, logits = CEL.linear_cross_entropy_logits_rows(h1, heads[0].weight, heads[0].bias, labels.view(-1))
        ref_logits = heads[1](h2)
        ref_losses = F.cross_entropy(ref_logits.float(), targets, ignore_index=-1, reduction="none")
    assert logits.dtype == ref_logits.dtype == BF16
    torch.testing.assert_close(logits, ref_logits, rtol=0, atol=0.05)
    torch.testing.assert_close(losses, ref_losses, rtol=1e-3, atol=1e-3)
    (losses.sum() + logits.float().pow(2).mean()).backward()
    (ref_losses.sum() + ref_logits.float().pow(2).mean()).backward()
    for a, e in ((h1, h2), (heads[0].weight, heads[1].weight), (heads[0].bias, heads[1].bias)):
        assert a.grad.dtype == torch.float32
        torch.testing.assert_close(a.grad, e.grad, rtol=0.05, atol=0.02)


def test_linear_cross_entropy_public_api_returns_logits_and_loss_in_the_eager_dtypes():
    """Under autocast the head's logits are bfloat16 and cross entropy over them float32, as
    eager code gives them."""
    head, hidden, labels = _head_case()
    with autocast(), _dispatch.at_any_size():
        loss, logits = ak.linear_cross_entropy(hidden, head, labels, return_logits=True)
        ref = head(hidden)
        ref_loss = F.cross_entropy(ref[:, :-1].reshape(-1, 97), labels[:, 1:].reshape(-1))
    assert logits.dtype == ref.dtype == BF16
    assert loss.dtype == ref_loss.dtype == torch.float32
    torch.testing.assert_close(logits, ref, rtol=0, atol=0.05)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-3, atol=1e-3)


# ---------------------------------------------------------------- cases every kernel runs

E, D = 16, 8


def _rope_tables():
    return randn(1, 6, D, seed=20), randn(1, 6, D, seed=21)


# name: (compiled function, eager function, input shapes, kernel counted in CALLS); the inputs
# are float32 leaves, the eager function also gets them in float64
CASES = {
    "layer_norm": (lambda x, r, w, b: LN.dropout_add_layer_norm(x, r, w, b, 1e-5),
                   lambda x, r, w, b: F.layer_norm(x + r, (E,), w, b, 1e-5), [(3, 5, E), (3, 5, E), (E,), (E,)], "layer_norm"),
    "rms_norm": (lambda x, w: RN.rms_norm(x, w, 1e-6), lambda x, w: RN.reference(x, w, 1e-6), [(3, 5, E), (E,)], "rms_norm"),
    "gated_act_pair": (lambda g, u: GA.gated_act(g, u, "silu"), lambda g, u: F.silu(g) * u, [(3, 5, E), (3, 5, E)], "gated_act"),
    "gated_act_stacked": (lambda h: GA.gated_act_stacked(h, "gelu"), lambda h: GA.reference(*h.chunk(2, -1), "gelu"), [(3, 5, 2 * E)],
                          "gated_act"),
    "gated_act_tanh": (lambda h: GA.gated_act_stacked(h, "gelu_tanh"), lambda h: GA.reference(*h.chunk(2, -1), "gelu_tanh"),
                       [(3, 5, 2 * E)], "gated_act"),
    "linear_gelu": (lambda x, w, b: BG.linear_gelu(x, w, b), lambda x, w, b: F.gelu(F.linear(x, w, b)), [(3, 5, E), (24, E), (24,)],
                    "bias_gelu"),
    "bias_gelu_tanh": (lambda h, b: BG.bias_gelu(h, b, "tanh"), lambda h, b: F.gelu(h + b, approximate="tanh"), [(3, 5, E), (E,)],
                       "bias_gelu"),
    "softmax": (lambda x: SM.softmax(x, 0.5), lambda x: torch.softmax(x * 0.5, -1), [(2, 3, 6, 6)], "softmax"),
    "softmax_causal_mask": (lambda x, m: SM.softmax(x, 1.0, m, is_causal=True), lambda x, m: SM.reference(x, 1.0, m, True),
                            [(2, 3, 6, 6), (1, 1, 6, 6)], "softmax"),
    "rope": (lambda q, k: RO.rope(q, k, *_rope_tables()),
             lambda q, k: RO.reference(q, k, *(t.to(q.dtype) for t in _rope_tables())), [(2, 3, 6, D), (2, 3, 6, D)], "rope"),
    "attention": (lambda q, k, v: FA.flash_attention(q, k, v, 0.3), lambda q, k, v: FA.reference(q, k, v, 0.3),
                  [(2, 3, 6, D), (2, 3, 7, D), (2, 3, 7, D)], "flash_attention"),
    "attention_causal_bias": (lambda q, k, v, b: FA.flash_attention(q, k, v, 0.3, b, is_causal=True),
                              lambda q, k, v, b: FA.reference(q, k, v, 0.3, b, is_causal=True),
                              [(2, 3, 6, D), (2, 1, 7, D), (2, 1, 7, D), (1, 3, 6, 7)], "flash_attention"),
    "linear_ce": (lambda h, w, b: CE.linear_cross_entropy_rows(h, w, b, _LABELS), lambda h, w, b: CE.row_losses(h, w, b, _TARGETS)[0],
                  [(10, E), (13, E), (13,)], "linear_cross_entropy"),
    "linear_ce_logits": (lambda h, w, b: CEL.linear_cross_entropy_logits_rows(h, w, b, _LABELS),
                         lambda h, w, b: CE.row_losses(h, w, b, _TARGETS), [(10, E), (13, E), (13,)], "linear_cross_entropy"),
}
_LABELS = torch.tensor([0, 5, -100, 12, 3, 3, -100, 7, 1, 0])
_TARGETS = torch.where(_LABELS < 0, torch.full_like(_LABELS, -1), _LABELS)


def _inputs(shapes, dtype=torch.float32, seed=10):
    return [randn(*s, seed=seed + i, scale=0.7).to(dtype).requires_grad_(True) for i, s in enumerate(shapes)]


def _outputs(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _loss(outs, seed=30):
    """A loss that is not linear in the outputs (so the second derivative has more to it)."""
    return sum((randn(*o.shape, seed=seed + i).to(o.dtype) * o.pow(3)).sum() for i, o in enumerate(outs))


# ---------------------------------------------------------------- non-reentrant checkpointing (D2)


def _checkpoint_grads(fn, inputs, mode):
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    torch.manual_seed(1)
    out = fn(*leaves) if mode == "plain" else cp.checkpoint(fn, *leaves, use_reentrant=mode == "reentrant")
    _loss(_outputs(out)).backward()
    return [t.grad for t in leaves]


def check_checkpointing(fn, inputs):
    plain = _checkpoint_grads(fn, inputs, "plain")
    for mode in ("reentrant", "nonreentrant"):
        for a, e in zip(_checkpoint_grads(fn, inputs, mode), plain):
            torch.testing.assert_close(a, e, rtol=1e-6, atol=1e-6, msg=lambda m: f"{mode}: {m}")


@pytest.mark.parametrize("name", sorted(CASES))
def test_non_reentrant_checkpointing_unpacks_every_kernels_saved_tensors(name):
    """The Functions saved views of their inputs made in forward: non-reentrant checkpointing
    then failed in backward ("No grad accumulator for a saved leaf")."""
    fn, _, shapes, kernel = CASES[name]
    before = _dispatch.CALLS[kernel]
    check_checkpointing(fn, _inputs(shapes))
    assert _dispatch.CALLS[kernel] > before


@pytest.mark.parametrize("api", ["dropout_add_layer_norm", "attention"])
def test_non_reentrant_checkpointing_replays_the_kernels_dropout(api):
    """With dropout the recomputation draws the seed again from the restored generator: the same
    mask, the same gradients."""
    if api == "dropout_add_layer_norm":
        fn = lambda x, r, w, b: LN.dropout_add_layer_norm(x, r, w, b, 1e-5, 0.3)  # noqa: E731
        shapes = CASES["layer_norm"][2]
    else:
        fn = lambda q, k, v: FA.flash_attention(q, k, v, 0.3, dropout_p=0.3)  # noqa: E731
        shapes = CASES["attention"][2]
    check_checkpointing(fn, _inputs(shapes))


def test_negative_control_a_saved_view_fails_under_non_reentrant_checkpointing():
    class SavesAView(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(_common.rows_view(x))
            return x * 2

        @staticmethod
        def backward(ctx, g):
            (x2,) = ctx.saved_tensors
            return g * 2 + 0 * x2.view(g.shape)

    with pytest.raises(RuntimeError, match="grad accumulator"):
        check_checkpointing(lambda x: SavesAView.apply(x * 1), _inputs([(3, 4, 5)]))


def test_saveable_detaches_views_made_in_forward_only():
    x = torch.randn(3, 4, requires_grad=True)
    with torch.no_grad():
        view, copy = x.view(12), x.t().contiguous()
    assert _common.saveable(x, x) is x
    assert _common.saveable(copy, x) is copy
    alias = _common.saveable(view, x)
    assert alias is not view and not alias.requires_grad and alias.data_ptr() == x.data_ptr()
    assert _common.saveable(None, x) is None


# ---------------------------------------------------------------- second-order gradients (D6)


def second_order(fn, inputs):
    """First-order gradients of the loss with ``create_graph``, and the gradients of a gradient
    penalty (the sum of their squares) with respect to every input."""
    grads = torch.autograd.grad(_loss(_outputs(fn(*inputs))), inputs, create_graph=True)
    penalty = sum(g.pow(2).sum() for g in grads)
    # a penalty with no graph at all (the defect's other form) has a zero gradient here
    again = torch.autograd.grad(penalty, inputs, allow_unused=True) if penalty.requires_grad else [None] * len(inputs)
    return [g.detach() for g in grads], [torch.zeros_like(t) if g is None else g for t, g in zip(inputs, again)]


def check_second_order(fn, eager, shapes, rtol=1e-3):
    """``fn`` on float32 inputs against ``eager`` on the same values in float64."""
    got = second_order(fn, _inputs(shapes))
    want = second_order(eager, _inputs(shapes, torch.float64))
    for order, gs, ws in zip(("first", "second"), got, want):
        for i, (g, w) in enumerate(zip(gs, ws)):
            err = (g.double() - w).abs().max().item()
            scale = max(w.abs().max().item(), 1e-6)
            assert err <= rtol * scale, f"{order}-order gradient of input {i}: max abs error {err:.3g}, reference max {scale:.3g}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_second_order_gradients_match_eager_float64(name):
    """Through the compiled kernels second-order gradients were silently 0 (or an error saying
    the gradient does not require grad): the backward's compiled results carry no graph."""
    fn, eager, shapes, kernel = CASES[name]
    before = _dispatch.CALLS[kernel]
    check_second_order(fn, eager, shapes)
    assert _dispatch.CALLS[kernel] > before


def test_second_order_through_a_learned_additive_mask():
    fn = lambda x, m: SM.softmax(x, 0.5, m)  # noqa: E731
    check_second_order(fn, lambda x, m: torch.softmax(x * 0.5 + m, -1), [(2, 3, 6, 6), (1, 3, 1, 6)])
    fa = lambda q, k, v, m: FA.flash_attention(q, k, v, 0.3, mask=m)  # noqa: E731
    check_second_order(fa, lambda q, k, v, m: FA.reference(q, k, v, 0.3, mask=m), [(2, 3, 6, D), (2, 3, 7, D), (2, 3, 7, D), (2, 1, 1, 7)])


def test_second_order_of_inputs_computed_from_each_other():
    """x and residual both functions of one tensor: each gets its partial gradient, not the
    other's path as well."""
    fn = lambda h, w, b: LN.dropout_add_layer_norm(h, 0.5 * h, w, b, 1e-5)  # noqa: E731
    check_second_order(fn, lambda h, w, b: F.layer_norm(1.5 * h, (E,), w, b, 1e-5), [(3, 5, E), (E,), (E,)])


@pytest.mark.parametrize("api", ["dropout_add_layer_norm", "attention"])
def test_second_order_with_dropout_uses_the_kernels_own_mask(api):
    """The differentiable backward regenerates the compiled kernel's mask from its seed: its
    first-order gradients are the compiled backward's, its second-order ones the float64
    reference's under that mask."""
    p, seed = 0.3, 12345
    if api == "dropout_add_layer_norm":
        shapes = CASES["layer_norm"][2]
        fn = lambda x, r, w, b: LN.dropout_add_layer_norm(x, r, w, b, 1e-5, p, seed=seed)  # noqa: E731
        keep = LN.keep_factors(15, E, p, seed).view(3, 5, E).double()
        eager = lambda x, r, w, b: LN.reference(x, r, w, b, 1e-5, keep.to(x.dtype))  # noqa: E731
    else:
        shapes = CASES["attention"][2]
        fn = lambda q, k, v: FA.flash_attention(q, k, v, 0.3, dropout_p=p, seed=seed)  # noqa: E731
        kept = FA.dropout_keep(seed, 2, 3, 6, 7, p)
        eager = lambda q, k, v: FA.reference(q, k, v, 0.3, dropout=kept, dropout_p=p)  # noqa: E731
    inputs = _inputs(shapes)
    compiled = torch.autograd.grad(_loss(_outputs(fn(*inputs))), inputs)
    differentiable = second_order(fn, inputs)[0]
    for a, e in zip(differentiable, compiled):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-5)
    check_second_order(fn, eager, shapes)


def test_second_order_with_dropout_and_no_mask_says_what_to_do(monkeypatch):
    monkeypatch.setattr(LN, "keep_factors", lambda *a, **kw: None)
    fn = lambda x, r, w, b: LN.dropout_add_layer_norm(x, r, w, b, 1e-5, 0.3)  # noqa: E731
    with pytest.raises(RuntimeError, match="ADOPT_DISABLE=dropout_add_layer_norm"):
        second_order(fn, _inputs(CASES["layer_norm"][2]))


def test_first_order_backward_still_runs_the_compiled_code(monkeypatch):
    """Without create_graph the compiled backward runs, not the torch formulation."""
    called = []
    monkeypatch.setattr(_common, "reference_grads", lambda *a: called.append(a))
    monkeypatch.setattr(LN, "reference_grads", lambda *a: called.append(a))
    x, r, w, b = _inputs(CASES["layer_norm"][2])
    LN.dropout_add_layer_norm(x, r, w, b, 1e-5).pow(2).sum().backward()
    assert not called and x.grad is not None and w.grad is not None


def test_public_api_gradient_penalty_matches_eager():
    """The audit's form: a gradient penalty on an upstream Linear's weight through the API."""
    torch.manual_seed(0)
    pre, ln = nn.Linear(E, E), nn.LayerNorm(E)
    x = torch.randn(3, 5, E)

    def penalty_grad(block):
        y = block(pre(x))
        (g,) = torch.autograd.grad(y.pow(3).mean(), pre.weight, create_graph=True)
        (hv,) = torch.autograd.grad(g.pow(2).sum(), pre.weight)
        return hv

    before = _dispatch.CALLS["layer_norm"]
    got = penalty_grad(lambda h: ak.dropout_add_layer_norm(h, 0.5 * h, ln, 0.0, True))
    assert _dispatch.CALLS["layer_norm"] == before + 1
    want = penalty_grad(lambda h: ln(h + 0.5 * h))
    assert got.abs().max() > 0
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-6)


def test_negative_control_a_once_differentiable_backward_fails_the_check():
    """A Function whose backward is right once but not differentiable (the audited defect,
    here around eager layer norm) fails :func:`check_second_order`."""

    class OnceOnly(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w, b):
            ctx.save_for_backward(x, w, b)
            return F.layer_norm(x, (E,), w, b)

        @staticmethod
        def backward(ctx, dy):
            x, w, b = ctx.saved_tensors
            with torch.enable_grad():
                leaves = [t.detach().requires_grad_(True) for t in (x, w, b)]
                return torch.autograd.grad(F.layer_norm(leaves[0], (E,), leaves[1], leaves[2]), leaves, dy)

    with pytest.raises(AssertionError, match="second-order"):
        check_second_order(OnceOnly.apply, lambda x, w, b: F.layer_norm(x, (E,), w, b), [(3, 5, E), (E,), (E,)])
