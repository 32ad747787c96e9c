"""Where Numba keeps fsdp's compiled code: one directory per version of fsdp's source.

Numba's on-disk cache checks only the timestamp of the file that holds each cached function,
not of the functions it calls: after an edit to ``fsdp/tcp/segment.py`` the cached
``run_once`` in ``fsdp/core/loop.py`` would still hold the old segment code.  Keying the whole
cache on a digest of every source file in the package makes any change start a fresh cache, and
an unchanged tree reuse it.  ``NUMBA_CACHE_DIR`` set by the user wins.

Modules that jitted code never imports (the socket layer, the CLI, the test harnesses, the
Python-side Stack) are left out of the digest, so editing them does not throw away minutes of
compiled engine.  A module added there must stay pure Python.
"""

import fcntl
import hashlib
import os
import shutil

_PURE_PYTHON = (
    "__init__.py",
    "_jitcache.py",
    "cli.py",
    "testing.py",
    "testing_linux.py",
    "selectors.py",
    "core/stack.py",
    "core/statseg.py",
    "apps/netdemo.py",
    "apps/demo.py",
    "apps/serve.py",
    "apps/loadgen.py",
    "apps/percore.py",
    "apps/observe.py",
    "apps/http_python.py",
    "sockapi/",
    "aio/",
    "asyncio/",
    "runtime/",
    "transparent/",
)
_KEEP = 2  # digests kept (the current one and the one before), older ones removed


def _source_digest(root: str) -> str:
    h = hashlib.blake2b(digest_size=10)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, root).replace(os.sep, "/")
                if rel.startswith(_PURE_PYTHON):
                    continue
                h.update(rel.encode())
                with open(path, "rb") as f:
                    h.update(f.read())
    return h.hexdigest()


def _writable_base(root: str) -> str:
    base = os.path.join(root, "__pycache__", "jit")
    try:
        os.makedirs(base, exist_ok=True)
        if os.access(base, os.W_OK):
            return base
    except OSError:
        pass
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    base = os.path.join(xdg, "fsdp", "jit")
    os.makedirs(base, exist_ok=True)
    return base


def _prune(base: str, current: str) -> None:
    try:
        entries = [e for e in os.scandir(base) if e.is_dir() and e.name != current]
    except OSError:
        return
    entries.sort(key=lambda e: e.stat().st_mtime, reverse=True)
    for e in entries[_KEEP - 1 :]:
        shutil.rmtree(e.path, ignore_errors=True)


def _install_save_lock() -> None:
    """Serialize Numba's cache writes in a directory across processes.

    ``IndexDataCacheFile.save`` reads a function's index, picks the first free data file number
    for a new signature, and writes both.  Two processes compiling two signatures of one function
    at once (a cold cache shared by a test run's processes, or by ``fsdp demo``'s workers) could
    both pick ``.1.nbc``: the index would then name one signature's file holding the other's
    code, which a later process would load and run for the wrong types.  Under an exclusive
    ``flock`` on one lock file per cache directory, each save sees the last one's index."""
    from numba.core import caching

    cls = caching.IndexDataCacheFile
    if getattr(cls, "_fsdp_save_lock", False) or not hasattr(cls, "save"):
        return
    save = cls.save

    def locked_save(self, key, data):
        try:
            fd = os.open(os.path.join(self._cache_path, ".save.lock"), os.O_RDWR | os.O_CREAT,
                         0o666)
        except OSError:  # (a directory we cannot write: Numba's own save says why)
            return save(self, key, data)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return save(self, key, data)
        finally:
            os.close(fd)

    cls.save = locked_save
    cls._fsdp_save_lock = True


def configure() -> None:
    _install_save_lock()
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    import numba

    root = os.path.dirname(os.path.abspath(__file__))
    digest = _source_digest(root)
    try:
        base = _writable_base(root)
    except OSError:
        return  # Numba's default (next to the sources) still works where it can
    path = os.path.join(base, digest)
    os.makedirs(path, exist_ok=True)
    os.utime(path)
    _prune(base, digest)
    numba.config.CACHE_DIR = path
