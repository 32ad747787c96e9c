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


# A cache that travels: FSDP_JIT_PORTABLE=1 (benchmarks/scaling_run.sh, for the device machine)
PORTABLE_CPU = "x86-64-v3"  # AVX2, BMI2, FMA, MOVBE: every x86-64 server CPU since ~2015


def _install_portable_keys() -> None:
    """Let a cache compiled on one x86-64 machine load on another with the same Numba and
    llvmlite (major.minor), and another CPython 3.x (the 2-CPU VM runs 3.11, the 16-core
    device machine 3.12).

    Numba keys its cache on what the directory's digest (``_source_digest``) already covers, and
    on what differs between such machines although the code would not: the function's bytecode
    (``co_code`` changes with every CPython minor version), the Python version in each file's
    name, the absolute path of the source directory, the exact Numba and llvmlite versions, and
    the host CPU's name and features.  Here the bytecode and path give way to the source digest
    and the path under ``fsdp/``, the versions to their major.minor (llvmlite's fixes the LLVM),
    and the CPU to ``PORTABLE_CPU`` for both compiling and loading (machine code for that
    baseline runs on either).  Object code calls Python's C API by symbol name only (boxing,
    errors, refcounts), which 3.11 and 3.12 both export: on 2026-11-27 a cache packed on the
    VM loaded and ran on the device (``benchmarks/scaling_run.sh``: warm-up 12 s instead of 6-9
    minutes of compiling).  A cache written this way lives in its own directory
    (``<digest>-portable``), so it never mixes with the host-tuned one."""
    import hashlib as _hashlib
    import sys

    import llvmlite
    import numba
    from numba.core import caching, config
    from numba.core.serialize import dumps

    if getattr(caching, "_fsdp_portable", False):
        return
    config.CPU_NAME = PORTABLE_CPU
    config.CPU_FEATURES = ""  # the name implies them
    root = os.path.dirname(os.path.abspath(__file__))
    abiflags = getattr(sys, "abiflags", "")

    def filename_base(self, fullname, abiflags_=abiflags):
        fixed = fullname.replace("<", "").replace(">", "")
        return f"{fixed}-{self.locator.get_disambiguator()}.portable{abiflags_}"

    default_subpath = caching._CacheLocator.get_suitable_cache_subpath.__func__

    def cache_subpath(cls, py_file):
        rel = os.path.relpath(os.path.dirname(os.path.abspath(py_file)), root)
        if rel == os.pardir or rel.startswith(os.pardir + os.sep):
            return default_subpath(cls, py_file)  # not fsdp's: where Numba puts it
        return "portable_" + rel.replace(os.sep, "_").replace(".", "pkg")

    def stable(value):
        py_func = getattr(value, "py_func", None)  # a dispatcher: named, not pickled by value
        if py_func is not None:
            return f"{py_func.__module__}.{py_func.__qualname__}".encode()
        if isinstance(value, (int, float, str, bytes, bool, type(None))):
            return repr(value).encode()
        return dumps(value)

    def index_key(self, sig, codegen):
        cells = self._py_func.__closure__ or ()
        cvars = b"\0".join(stable(c.cell_contents) for c in cells)
        return (sig, codegen.magic_tuple(),
                ("portable", _hashlib.sha256(cvars).hexdigest()))

    def major_minor(v):
        return ".".join(v.split(".")[:2])

    version = f"{major_minor(numba.__version__)}+llvmlite{major_minor(llvmlite.__version__)}"
    init = caching.IndexDataCacheFile.__init__

    def index_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self._version = version

    caching.CacheImpl.get_filename_base = filename_base
    caching._CacheLocator.get_suitable_cache_subpath = classmethod(cache_subpath)
    caching.Cache._index_key = index_key
    caching.IndexDataCacheFile.__init__ = index_init
    caching._fsdp_portable = True


def portable() -> bool:
    return os.environ.get("FSDP_JIT_PORTABLE", "") not in ("", "0")


def configure() -> None:
    _install_save_lock()
    if portable():
        _install_portable_keys()
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    import numba

    root = os.path.dirname(os.path.abspath(__file__))
    digest = _source_digest(root) + ("-portable" if portable() else "")
    try:
        base = _writable_base(root)
    except OSError:
        return  # Numba's default (next to the sources) still works where it can
    path = os.path.join(base, digest)
    os.makedirs(path, exist_ok=True)
    os.utime(path)
    _prune(base, digest)
    numba.config.CACHE_DIR = path
