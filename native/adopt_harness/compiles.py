"""Which of the given Python files do not compile (byte-compile only, nothing imported).

Usage: python -m adopt_harness.compiles FILE...
Prints one JSON line: the list of "path: error" for files that fail.
"""
import json
import os
import py_compile
import sys
import tempfile


def failures(paths):
    out = os.path.join(tempfile.mkdtemp(), "x.pyc")
    bad = []
    for p in paths:
        try:
            py_compile.compile(p, doraise=True, cfile=out)
        except Exception as e:  # a syntax error, or a file that cannot be read
            bad.append(p + ": " + str(e).splitlines()[0])
    return bad


if __name__ == "__main__":
    print(json.dumps(failures(sys.argv[1:])))
