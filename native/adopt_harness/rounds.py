"""The order in which side-by-side timings run their variants in each round.

A step's time depends on what ran just before it: caches, the allocator's free blocks, threads
still spinning. Every other round runs the variants backwards (A B C, C B A, ...), so that no
variant always goes first or always follows the same one."""


def in_round(variants, r):
    """The (name, value) pairs of the dict ``variants``, or the elements of a list, in round ``r``'s order."""
    items = list(variants.items()) if isinstance(variants, dict) else list(variants)
    return items if r % 2 == 0 else items[::-1]
