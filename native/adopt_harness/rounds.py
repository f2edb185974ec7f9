"""The order in which side-by-side timings run their variants in each round.

A step's time depends on what ran just before it and on where it sits in its round: caches, the
allocator's free blocks, threads still spinning. Every other round runs the variants backwards
(A B C, C B A), so that of two variants neither always goes first; with three or more, each pair
of rounds also starts one variant further on (A B C, C B A, B C A, A C B, C A B, B A C), so that
every variant takes every place in a round equally often, not the middle one always."""


def in_round(variants, r):
    """The (name, value) pairs of the dict ``variants``, or the elements of a list, in round ``r``'s order."""
    items = list(variants.items()) if isinstance(variants, dict) else list(variants)
    k = (r // 2) % len(items) if len(items) > 2 else 0
    turned = items[k:] + items[:k]
    return turned if r % 2 == 0 else turned[::-1]
