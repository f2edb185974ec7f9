"""One module per compiled kernel: its C++ template, schedule space, autograd and reference.

Importing this package registers every kernel module in it with :mod:`adopt_kernels.registry`.
"""

import importlib
import pkgutil

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")
