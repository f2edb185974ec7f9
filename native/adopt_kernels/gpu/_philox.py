"""Dropout masks from Philox-4x32-10, sixteen bits a column: what the Triton kernels that drop
share (dropout + LayerNorm, flash attention).

A row's counters are ``base + c // 8`` for column ``c``: one ``tl.randint4x`` call gives the four
words of eight columns, column ``c`` taking the low (``c`` even) or high 16 bits of word
``(c % 8) // 2``, and it is kept where that half-word is at least the 16-bit threshold
(``kernels._common.threshold16``: ``p`` to the nearest 1/65536). One call serves eight
columns, an eighth of the work of a call per column.
"""

import triton
import triton.language as tl

from .. import _dispatch

# whether the kernels interleave the half-words with tl.join; cleared where this Triton cannot
# compile that, after which every kernel draws the same words column by column
_join = True


def launch(kernel, grid, *args, **kwargs):
    """``kernel[grid](*args, **kwargs)`` with its ``JOIN`` set: True until it fails to compile."""
    global _join
    if _join:
        try:
            return kernel[grid](*args, JOIN=True, **kwargs)
        except Exception as e:  # noqa: BLE001  (a compiler's failure has no one type)
            if type(e).__name__ == "OutOfResources":
                raise  # the schedule's, not the join's: the dispatcher falls back to the default
            out = kernel[grid](*args, JOIN=False, **kwargs)
            _join = False
            _dispatch.say_once("dropout-join", f"dropout masks: interleaving the generator's words failed to compile "
                                               f"({type(e).__name__}); drawing them column by column")
            return out
    return kernel[grid](*args, JOIN=False, **kwargs)


@triton.jit
def kept16(seed, base, col0, thr, R: tl.constexpr, C: tl.constexpr, JOIN: tl.constexpr):
    """Where dropout keeps the [R, C] tile of columns ``col0 .. col0 + C - 1`` (``col0`` a multiple
    of 8) of rows whose first counter is ``base`` [R, 1]."""
    if JOIN:
        # the half-words interleaved back into column order: joined innermost last,
        # (word // 2, word % 2, half) flattens to 2 * word + half
        w0, w1, w2, w3 = tl.randint4x(seed, base + col0 // 8 + tl.arange(0, C // 8)[None, :])
        lo = tl.join(tl.join(w0 & 0xFFFF, w2 & 0xFFFF), tl.join(w1 & 0xFFFF, w3 & 0xFFFF))
        hi = tl.join(tl.join((w0 >> 16) & 0xFFFF, (w2 >> 16) & 0xFFFF), tl.join((w1 >> 16) & 0xFFFF, (w3 >> 16) & 0xFFFF))
        halves = tl.reshape(tl.join(lo, hi), (R, C))
    else:
        # the same half-words, each column running its counter's Philox itself (eight times the work)
        cols = tl.arange(0, C)[None, :]
        w0, w1, w2, w3 = tl.randint4x(seed, base + (col0 + cols) // 8)
        k = (cols % 8) // 2
        word = tl.where(k == 0, w0, tl.where(k == 1, w1, tl.where(k == 2, w2, w3)))
        halves = tl.where(cols % 2 == 0, word & 0xFFFF, (word >> 16) & 0xFFFF)
    return halves >= thr
