"""Side-by-side timings alternate their order each round, for a dict of variants and a list alike."""
from adopt_harness.rounds import in_round


def test_every_other_round_runs_backwards():
    variants = {"a": 1, "b": 2, "c": 3}
    assert [in_round(variants, r) for r in range(3)] == [[("a", 1), ("b", 2), ("c", 3)], [("c", 3), ("b", 2), ("a", 1)], [("a", 1), ("b", 2), ("c", 3)]]
    assert [in_round(["x", "y"], r) for r in range(2)] == [["x", "y"], ["y", "x"]]


def test_the_variants_themselves_are_left_as_they_were():
    finalists = ["x", "y"]
    in_round(finalists, 1)
    assert finalists == ["x", "y"]
