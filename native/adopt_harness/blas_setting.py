"""The benchmarks' ``--blas-core`` option: OpenBLAS runs the kernels of the CPU's instruction set
(``matched``, the default) or whatever it picked when it loaded (``as-loaded``).

A library that mistook the CPU runs its generic kernels, 4-5x slower on the machines measured
(``adopt_kernels.blas_core``); matrix products then swamp every other cost, and a comparison of
the rest says little about a machine set up as users set theirs up. Both sides of every
comparison run in one process, so they share the core either way.
"""

from adopt_kernels import blas_core


def add_option(parser):
    parser.add_argument("--blas-core", choices=("matched", "as-loaded"), default="matched",
                        help="matched: OpenBLAS runs the kernels of this CPU's instruction set where it picked narrower "
                             "ones (adopt_kernels.blas_core), for both sides; as-loaded: as the library picked")


def apply(args):
    """Match the core where asked (a message says why where it could not); the phrase for the
    result rows. ``as-loaded`` cannot undo a match ``ADOPT_BLAS_CORE=1`` made at import: it
    stops with a message instead of measuring under a name that is not true."""
    if args.blas_core == "matched":
        blas_core.match()
    elif blas_core.matched():
        raise SystemExit(f"--blas-core as-loaded: {blas_core.ENV}=1 matched the core when adopt_kernels was imported; "
                         f"unset it to measure the library's own pick")
    return blas_core.setting()
