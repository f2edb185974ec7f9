"""Side-by-side timings alternate their order each round, for a dict of variants and a list alike."""
import collections
import itertools

from adopt_harness.rounds import in_round


def test_two_variants_alternate_which_goes_first():
    assert [in_round(["x", "y"], r) for r in range(4)] == [["x", "y"], ["y", "x"], ["x", "y"], ["y", "x"]]


def test_every_other_round_runs_backwards_and_each_pair_of_rounds_starts_one_further_on():
    variants = {"a": 1, "b": 2, "c": 3}
    orders = [[k for k, _ in in_round(variants, r)] for r in range(6)]
    assert orders == [list("abc"), list("cba"), list("bca"), list("acb"), list("cab"), list("bac")]


def test_over_a_cycle_every_variant_takes_every_place_equally_and_each_pair_both_orders():
    for n in (3, 4, 5):
        names = [f"v{i}" for i in range(n)]
        places = collections.Counter()
        before = collections.Counter()
        for r in range(2 * n):
            order = in_round(names, r)
            assert sorted(order) == names
            places.update((v, i) for i, v in enumerate(order))
            before.update((x, y) for x, y in itertools.combinations(order, 2))
        assert set(places.values()) == {2}, n  # each variant twice in each place
        assert all(before[(x, y)] == before[(y, x)] for x, y in itertools.permutations(names, 2)), n


def test_the_variants_themselves_are_left_as_they_were():
    finalists = ["x", "y", "z"]
    in_round(finalists, 3)
    assert finalists == ["x", "y", "z"]
