"""The comparison's allowance for a tensor the original itself computes far from float64 (a
gradient that is zero in exact arithmetic): a rewrite passes there when it is no further from the
original's float64 result than OWN_ERROR_FACTOR times the original's own error, and only then."""
import torch

from adopt_harness.compare import OWN_ERROR_FACTOR, Comparison, policy_for


def _case(rewrite_noise, with_exact=True):
    g = torch.Generator().manual_seed(0)
    exact = 1e-9 * torch.randn(64, dtype=torch.float64, generator=g)
    reference = (exact + 1e-4 * torch.randn(64, dtype=torch.float64, generator=g)).float()
    rewritten = (exact + rewrite_noise * torch.randn(64, dtype=torch.float64, generator=g)).float()
    cmp = Comparison(policy_for("fp32"))
    if with_exact:
        cmp.exact = {"train grad of fc.bias": exact}.get
    cmp.tensor("train grad of fc.bias", reference, rewritten)
    return cmp


def test_rounding_noise_no_larger_than_the_originals_passes_and_is_listed():
    cmp = _case(1e-4)
    assert cmp.problems == [] and cmp.within_own_error == ["train grad of fc.bias"]


def test_an_error_past_the_originals_own_is_a_problem_that_says_what_the_original_was_off_by():
    cmp = _case(1e-4 * OWN_ERROR_FACTOR * 20)
    assert len(cmp.problems) == 1 and "the original's own error there against float64" in cmp.problems[0]


def test_without_a_float64_result_the_tolerance_alone_decides():
    cmp = _case(1e-4, with_exact=False)
    assert len(cmp.problems) == 1 and "own error" not in cmp.problems[0]
