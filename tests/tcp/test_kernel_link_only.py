"""Link-only kernel libraries (fsdp/tcp/kernel.py): a kernel's compiled library keeps LLVM IR for
its callers to link and generates no machine code of its own; the roots Python calls optimize and
generate code for the whole tree.  Each check runs in a fresh interpreter with its own Numba cache
directory, so compiling, loading from the cache, and loading kernels from the cache while their
roots compile again are all exercised."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

MODULE = Path(__file__).with_name("tiny_kernels.py")

PROBE = textwrap.dedent(
    """
    import json, sys
    import fsdp.tcp.kernel as k
    import tiny_kernels as m
    out = {"link_only_on": k._LINK_ONLY, "root": m.root(5), "other_root": m.other_root(5),
           "leaf_libraries": [bool(getattr(c.library, "_fsdp_link_only", False))
                              for c in m.leaf.overloads.values()]}
    for name in ("root", "other_root"):
        try:
            getattr(m, name)(77)
        except ValueError as e:
            out[name + "_raises"] = list(e.args)
    print(json.dumps(out))
    """
)


def _probe(tmp_path, cache, link_only="1"):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), FSDP_LINK_ONLY_KERNELS=link_only,
               PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    r = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    import json

    return json.loads(r.stdout.strip().splitlines()[-1])


def _roots_cached(cache) -> list:
    return [os.path.join(d, f) for d, _, fs in os.walk(cache) for f in fs
            if "root" in f and "tiny_kernels" in f]


@pytest.fixture
def module(tmp_path):
    shutil.copy(MODULE, tmp_path / MODULE.name)
    return tmp_path


EXPECTED = {"root": 3 * (0 + 1 + 2 + 3 + 4) + 5 + 16, "other_root": 17,
            "root_raises": ["bad value", 77], "other_root_raises": ["bad value", 77]}


def _same(got: dict) -> None:
    assert {k: got.get(k) for k in EXPECTED} == EXPECTED


def test_kernels_compile_link_only_and_load_from_the_cache(module, tmp_path):
    cache = tmp_path / "cache"
    first = _probe(module, cache)
    assert first["link_only_on"] is True
    assert first["leaf_libraries"] == [True]  # compiled here, no machine code of its own
    _same(first)

    cached = _probe(module, cache)  # the roots load their object code: the kernels are not needed
    assert cached["leaf_libraries"] == []
    _same(cached)

    roots = _roots_cached(cache)
    assert roots, "the roots were not cached"
    for path in roots:
        os.remove(path)
    relinked = _probe(module, cache)  # the roots compile again, linking kernels from the cache
    assert relinked["leaf_libraries"] == [True]
    _same(relinked)


def test_the_usual_compile_when_switched_off_and_caches_mix(module, tmp_path):
    cache = tmp_path / "cache"
    off = _probe(module, cache, link_only="0")
    assert off["link_only_on"] is False and off["leaf_libraries"] == [False]
    _same(off)

    link_only_cache = tmp_path / "cache2"
    _probe(module, link_only_cache)
    for path in _roots_cached(link_only_cache):
        os.remove(path)
    mixed = _probe(module, link_only_cache, link_only="0")  # link-only kernels from the cache
    assert mixed["leaf_libraries"] == [True]
    _same(mixed)
