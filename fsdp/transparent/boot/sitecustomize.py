"""Bootstrap of ``fsdp run``: Python imports ``sitecustomize`` at start-up from ``PYTHONPATH``;
this one installs fsdp's transparent mode before the program's first line, then runs any
other ``sitecustomize`` it shadows.

``FSDP_TRANSPARENT`` is taken out of the environment here, so the program's child processes
run on the kernel (a second process on the same address would be a second host with the
same IP and MAC on the wire).
"""

import importlib.machinery
import importlib.util
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))

if os.environ.pop("FSDP_TRANSPARENT", None) == "1":
    from fsdp.transparent import install

    install()


def _chain() -> None:
    path = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


_chain()
