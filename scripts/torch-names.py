"""The names of torch a rule's pattern may call, for the rule checker: grammar/torch-names.json.

The analysis reads a call of any lower-case member of torch's operation namespaces as that op
(src/analysis/canon.ts, OP_NAMESPACES), and a call of a torch.nn class as that module; adopt keeps
no list of its own of either, so the rule checker learns them from torch itself, through this file.

Usage:
  python3 scripts/torch-names.py           adds the installed torch's names to the file (names of
                                           the torch versions that made it before are kept: a
                                           rule may be written for any of them)
  python3 scripts/torch-names.py --print   prints the installed torch's names only

Reads names only: no module beyond what `import torch` imports is loaded.
"""
import inspect
import json
import math
import os
import sys

import torch

FORMAT = "adopt-torch-names/1"
# the namespaces of OP_NAMESPACES in src/analysis/canon.ts (a test keeps the two equal)
OP_NAMESPACES = ["torch.nn.functional", "torch.special", "torch", "math"]
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "grammar", "torch-names.json")


def namespace(path):
    if path == "math":
        return math
    obj = torch
    for part in path.split(".")[1:]:
        obj = getattr(obj, part)
    return obj


def functions(ns):
    """The members the analysis lowers to an op: a lower-case name called on the namespace."""
    out = []
    for name in dir(ns):
        if name.startswith("_") or not name[0].islower() or not all(c.islower() or c.isdigit() or c == "_" for c in name):
            continue
        try:
            value = getattr(ns, name)
        except Exception:  # a lazy or deprecated attribute that fails when read is no function
            continue
        if callable(value) and not inspect.ismodule(value):
            out.append(name)
    return sorted(out)


def classes(ns, base):
    out = []
    for name in dir(ns):
        if name.startswith("_") or not name[0].isupper():
            continue
        value = getattr(ns, name, None)
        if inspect.isclass(value) and issubclass(value, base) and value is not base:
            out.append(name)
    return sorted(out)


def installed():
    return {
        "format": FORMAT,
        "torch": [torch.__version__],
        "functions": {ns: functions(namespace(ns)) for ns in OP_NAMESPACES},
        "modules": {"torch.nn": classes(torch.nn, torch.nn.Module), "torch.optim": classes(torch.optim, torch.optim.Optimizer)},
    }


def merged(old, new):
    if not old or old.get("format") != FORMAT:
        return new
    union = lambda a, b: sorted(set(a) | set(b))
    return {
        "format": FORMAT,
        "torch": union(old["torch"], new["torch"]),
        "functions": {ns: union(old["functions"].get(ns, []), new["functions"][ns]) for ns in OP_NAMESPACES},
        "modules": {k: union(old["modules"].get(k, []), v) for k, v in new["modules"].items()},
    }


def main():
    names = installed()
    if sys.argv[1:] == ["--print"]:
        print(json.dumps(names))
        return
    if sys.argv[1:]:
        sys.exit(__doc__)
    try:
        with open(OUT) as f:
            old = json.load(f)
    except FileNotFoundError:
        old = None
    with open(OUT, "w") as f:
        json.dump(merged(old, names), f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
