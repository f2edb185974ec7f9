"""A warm interpreter for many short Python runs: torch is imported once, and each run is a fork.

Importing torch costs about two CPU seconds, more than most harness runs themselves. A process
that launches many of them (the test suite) starts this server once; the launcher then runs
`forkclient.py SOCKET ARGS...` in place of `python ARGS...`. The client hands its stdin, stdout
and stderr to the server over the socket, the server forks, and the child runs ARGS (`-m module`,
`-c code` or a script) on those descriptors with the client's environment, directory and
arguments, exactly as a fresh interpreter would, apart from the modules already imported.
The client exits with the child's status. A client that goes away takes its child with it. A
run whose environment differs from the server's in what is read only at startup (READ_AT_START:
thread pools, hashing, stdio encoding) is sent back to start an interpreter of its own.

Usage: python -m adopt_harness.forkserver SOCKET [--preload torch,numpy] [--preload-files A.py:B.py]
Prints `ready` on stdout once it listens; ends when its stdin closes (its launcher is gone).
"""
import json
import os
import selectors
import signal
import socket
import struct
import sys

HEADER = struct.Struct("!I")

# Read once, when the interpreter starts or torch and its libraries load (thread pools, devices,
# allocators, hashing, stdio encoding): a run that sets one of these differently from the server
# gets a fresh interpreter instead of a fork that would ignore it.
READ_AT_START = ("OMP_", "GOMP_", "KMP_", "MKL_", "OPENBLAS_", "CUDA_", "PYTORCH_", "TORCH_", "LD_", "LC_",
                 "LANG", "PYTHONHASHSEED", "PYTHONWARNINGS", "PYTHONIOENCODING", "PYTHONUTF8", "PYTHONMALLOC",
                 "PYTHONOPTIMIZE", "PYTHONHOME", "PYTHONNOUSERSITE", "PYTHONSAFEPATH", "MALLOC_", "GLIBC_TUNABLES")


def read_at_start(env):
    return {k: v for k, v in env.items() if k.startswith(READ_AT_START)}


def read_request(conn):
    """The request (a length-prefixed JSON object) and the three descriptors sent with it."""
    data, fds, _flags, _addr = socket.recv_fds(conn, 1 << 16, 3)
    if len(data) < HEADER.size or len(fds) != 3:
        for fd in fds:
            os.close(fd)
        raise ValueError("malformed request")
    (size,) = HEADER.unpack_from(data)
    body = bytearray(data[HEADER.size:])
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            raise ValueError("request cut short")
        body += chunk
    return json.loads(body.decode("utf-8")), fds


def _search_path(request, base_path):
    """sys.path as a fresh interpreter given this environment and argv would build it."""
    argv = request["argv"]
    first = os.path.dirname(os.path.abspath(argv[0])) if argv[0] not in ("-m", "-c") else request["cwd"]
    extra = [p for p in request["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
    return [first] + [os.path.join(request["cwd"], p) for p in extra] + base_path


def _streams(unbuffered):
    """New sys streams on descriptors 0, 1 and 2 (the client's), buffered as python would."""
    import io
    sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding="utf-8")
    out = io.BufferedWriter(io.FileIO(1, "w", closefd=False))
    sys.stdout = io.TextIOWrapper(out, encoding="utf-8", line_buffering=unbuffered or os.isatty(1), write_through=unbuffered)
    err = io.BufferedWriter(io.FileIO(2, "w", closefd=False))
    sys.stderr = io.TextIOWrapper(err, encoding="utf-8", errors="backslashreplace", line_buffering=True, write_through=unbuffered)


def _exit_code(e):
    if e.code is None:
        return 0
    if isinstance(e.code, int):
        return e.code
    print(e.code, file=sys.stderr)
    return 1


def run_child(request, base_path):
    """In the forked child: become the requested run, then exit with its status."""
    import atexit
    import random
    import runpy
    import traceback
    import types

    env = request["env"]
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(env)
    sys.path[:] = _search_path(request, base_path)
    sys.dont_write_bytecode = bool(env.get("PYTHONDONTWRITEBYTECODE"))
    _streams(bool(env.get("PYTHONUNBUFFERED")))
    if request.get("warnings"):
        import warnings
        sys.warnoptions[:] = request["warnings"]
        warnings._processoptions(request["warnings"])
    # a fresh interpreter seeds these from the system; a fork would repeat the server's state
    random.seed()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    argv = request["argv"]
    code = 0
    try:
        if argv[0] == "-m":
            sys.argv = [argv[1]] + argv[2:]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        elif argv[0] == "-c":
            sys.argv = ["-c"] + argv[2:]
            main = types.ModuleType("__main__")
            sys.modules["__main__"] = main
            exec(compile(argv[1], "<string>", "exec"), main.__dict__)
        else:
            sys.argv = list(argv)
            runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as e:
        code = _exit_code(e)
    except BaseException as e:
        # the traceback a fresh interpreter would print: from the run's own code on
        traceback.print_exception(type(e), e, e.__traceback__.tb_next)
        code = 1
    try:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        code = code or 120
    os._exit(code)


class Server:
    def __init__(self, path):
        self.path = path
        self.base_path = [p for p in sys.path[1:] if p not in os.environ.get("PYTHONPATH", "").split(os.pathsep)]
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(64)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, ("accept", None))
        self.selector.register(sys.stdin, selectors.EVENT_READ, ("launcher", None))
        self.children = {}  # pid -> (client connection, pidfd)
        self.started_with = read_at_start(os.environ)

    def start(self, conn):
        try:
            request, fds = read_request(conn)
        except (OSError, ValueError, UnicodeDecodeError) as e:
            conn.sendall((json.dumps({"error": str(e)}) + "\n").encode())
            conn.close()
            return
        differs = sorted(set(read_at_start(request["env"]).items()) ^ set(self.started_with.items()))
        if differs:
            for fd in fds:
                os.close(fd)
            conn.sendall((json.dumps({"fresh": f"{differs[0][0]} differs from the server's"}) + "\n").encode())
            conn.close()
            return
        pid = os.fork()
        if pid == 0:
            os.setpgid(0, 0)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            for i, fd in enumerate(fds):
                os.dup2(fd, i)
                os.close(fd)
            self.selector.close()
            self.listener.close()
            conn.close()
            run_child(request, self.base_path)
        for fd in fds:
            os.close(fd)
        pidfd = os.pidfd_open(pid)
        self.children[pid] = (conn, pidfd)
        self.selector.register(pidfd, selectors.EVENT_READ, ("exited", pid))
        self.selector.register(conn, selectors.EVENT_READ, ("client", pid))

    def finish(self, pid, gone=False):
        """The child has exited (or its client is gone: end its process group first)."""
        conn, pidfd = self.children.pop(pid)
        if gone:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _, status = os.waitpid(pid, 0)
        self.selector.unregister(pidfd)
        self.selector.unregister(conn)
        os.close(pidfd)
        if not gone:
            reply = {"signal": os.WTERMSIG(status)} if os.WIFSIGNALED(status) else {"exit": os.WEXITSTATUS(status)}
            try:
                conn.sendall((json.dumps(reply) + "\n").encode())
            except OSError:
                pass
        conn.close()

    def serve(self):
        print("ready", flush=True)
        while True:
            for key, _ in self.selector.select():
                what, pid = key.data
                if what == "accept":
                    conn, _ = self.listener.accept()
                    self.start(conn)
                elif what == "exited" and pid in self.children:
                    self.finish(pid)
                elif what == "client" and pid in self.children:
                    self.finish(pid, gone=True)
                elif what == "launcher" and not os.read(sys.stdin.fileno(), 4096):
                    return

    def close(self):
        for pid in list(self.children):
            self.finish(pid, gone=True)
        self.listener.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def preload_files(paths):
    """Imports each file as the file harness imports an original (build.load), so that a run
    checking it finds it, and the package modules it pulls in, already imported and compiled.
    Anything a module prints goes to stderr (stdout says `ready`), and sys.path is restored: a
    run's search path is its own. A file that does not import is only reported: the run that
    checks it meets the same error and says it."""
    import contextlib
    import threading

    from adopt_harness.build import load

    saved = list(sys.path)
    with contextlib.redirect_stdout(sys.stderr):
        for path in paths:
            try:
                load(path, True)
            except BaseException as e:  # SystemExit or KeyboardInterrupt from module code too
                print(f"forkserver: {path} not preloaded: {type(e).__name__}: {str(e)[:200]}", file=sys.stderr)
    sys.path[:] = saved
    if threading.active_count() > 1:
        # a fork copies only this thread: say so, since a lock another thread holds would hang a run
        print(f"forkserver: {threading.active_count() - 1} threads started while preloading", file=sys.stderr)


def main(argv):
    import argparse

    p = argparse.ArgumentParser(prog="python -m adopt_harness.forkserver")
    p.add_argument("socket")
    p.add_argument("--preload", default="torch", help="comma-separated modules to import once")
    p.add_argument("--preload-files", default="", help=f"{os.pathsep}-separated model files to import once, as the file harness imports an original")
    args = p.parse_args(argv)
    for name in filter(None, args.preload.split(",")):
        __import__(name)
    preload_files([f for f in args.preload_files.split(os.pathsep) if f])
    server = Server(args.socket)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve()
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
