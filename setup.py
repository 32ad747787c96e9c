"""The C part of fsdp (native/): everything else is in pyproject.toml.

``fsdp._native`` is optional: where it cannot be built (no C compiler, no Python headers),
the install goes on and fsdp calls its engine through Numba's entries instead
(fsdp/sockapi/fastcall.py), ~0.15 µs more per socket call."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "fsdp._native",
            sources=["native/fsdp_native.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter",
                                "-Wno-missing-field-initializers", "-Wno-cast-function-type"],
            optional=True,
        )
    ]
)
