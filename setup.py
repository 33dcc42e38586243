"""The C extension of the pip package (metadata is in pyproject.toml).

Compiled as //python:statsprof/_statsprof.so is by Bazel: the library's
sources and the module's, the library's flags, and a version script that
exports only PyInit__statsprof, so a host that links its own statsprof and
imports this module never mixes the two copies.
"""
import glob
import os
import re

from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def version():
    """STATSPROF_VERSION_STRING from the public header: one version, one place."""
    with open(os.path.join(HERE, "include", "statsprof.h")) as f:
        m = re.search(r'^#define STATSPROF_VERSION_STRING "([^"]+)"', f.read(), re.M)
    if not m:
        raise RuntimeError("include/statsprof.h: no STATSPROF_VERSION_STRING")
    return m.group(1)


# setuptools wants source paths relative to this file.
sources = sorted(glob.glob("lib/*.c")) + sorted(glob.glob("lib/sinks/*.c"))
sources.append("python/src/_statsprofmodule.c")

setup(
    version=version(),
    package_dir={"": "python/src"},
    packages=["statsprof"],
    ext_modules=[
        Extension(
            "statsprof._statsprof",
            sources=sources,
            depends=sorted(glob.glob("lib/*.h")) + ["include/statsprof.h", "python/src/exports.lds"],
            include_dirs=["include", "lib"],
            define_macros=[("_GNU_SOURCE", None)],
            extra_compile_args=[
                "-std=c11",
                "-O3",
                "-fvisibility=hidden",
                "-Wall",
                "-Wextra",
                "-Wno-unused-parameter",
                "-Wno-missing-field-initializers",
                "-Wno-format-truncation",
                "-Werror=implicit-function-declaration",
            ],
            extra_link_args=[
                "-pthread",
                "-Wl,--version-script=" + os.path.join(HERE, "python", "src", "exports.lds"),
            ],
        )
    ],
)
