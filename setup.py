"""Build of the optional native extensions (metadata lives in pyproject.toml).

``amsgrad.core._native``: the fused kernel, from ``src/amsgrad/core/native/*.c`` (``module.c``
lists the files). ``amsgrad.apps._roofline``: the memory roofline the benchmark compares with,
from ``src/amsgrad/apps/roofline.c`` (it shares only ``parallel.h`` and the thread pool ``pool.c``
with the kernel, compiled into each: two pools).

Both are plain C11 with the CPython API and the buffer protocol. The kernel also reads exact
ndarrays through NumPy's C-API (``ndarray.c``) when NumPy 2 or later is importable at build time
(``pyproject.toml`` asks for it): its headers then target the oldest NumPy the package supports.
Without them the kernel is built on the buffer protocol alone (the same decisions, a little more
time per array); NumPy is never needed to compile. Both are ``optional=True``: without a working C
compiler the install still succeeds and the package runs on its NumPy path. Then the one-line reason
is written to ``_native_build_error.txt`` next to where ``_native`` would be (in the build
directory, so a wheel carries it), and ``amsgrad.backend()`` reports it; a successful build removes
a stale such file. Only the kernel writes it: a failed roofline build costs the benchmark one row,
nothing else.

Environment variables read by the build:

* ``AMSGRAD_REQUIRE_NATIVE=1``: a failed build of the kernel is an error (the install fails),
  for CI and for deployments that must not fall back to NumPy.
* ``AMSGRAD_CFLAGS_EXTRA``: extra compiler flags, split like a shell command line, added after
  the ones below, e.g. ``-Wall -Wextra -Werror`` (CI builds warning-free) or
  ``-fsanitize=address,undefined -fno-omit-frame-pointer``; ``-fsanitize=...`` flags are passed to
  the linker as well. ``-DAMS_AVX512_F32=1`` builds the AVX-512F float32 kernel (off by default: no
  faster than AVX2 where measured), ``-DAMS_NO_SIMD`` only the portable kernels.

Flags: -O3; -ffp-contract=off because a fused multiply-add changes the results (the kernel must be
bit-exact); no -ffast-math; no -march=native (the wheel must run on any x86-64: the AVX2/F16C and
AVX-512F code is compiled per function with __attribute__((target)) and chosen at run time).
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

NATIVE = "amsgrad.core._native"
BUILD_ERROR_FILE = "_native_build_error.txt"
NATIVE_DIR = "src/amsgrad/core/native"
NATIVE_SOURCES = [
    f"{NATIVE_DIR}/{name}.c"
    for name in (
        "module",
        "apply",
        "addresses",
        "fast",
        "buffers",
        "ndarray",
        "threads",
        "pool",
        "kernels",
        "kernels_avx2",
        "kernels_avx512",
    )
]
NATIVE_HEADERS = [
    f"{NATIVE_DIR}/{name}.h" for name in ("internal", "half", "kernel_body", "parallel")
]

UNIX_COMPILE_ARGS = [
    "-O3",
    "-std=c11",
    "-ffp-contract=off",
    "-fno-math-errno",
    "-fno-strict-aliasing",
    "-pthread",
]
UNIX_LINK_ARGS = ["-pthread"]
MSVC_COMPILE_ARGS = ["/O2", "/fp:precise"]


def _numpy_headers() -> list[str] | None:
    """NumPy's include folder when its headers are those of NumPy 2 or later, else None.

    Older headers would make an extension that refuses to load NumPy's C-API on NumPy 2 (and says
    so on stderr): the kernel is then built without the direct path rather than with it."""
    try:
        import numpy
    except ImportError:
        return None
    major = numpy.__version__.split(".", 1)[0]
    return [numpy.get_include()] if major.isdigit() and int(major) >= 2 else None


def _extra_flags() -> tuple[list[str], list[str]]:
    """AMSGRAD_CFLAGS_EXTRA as (compile flags, link flags)."""
    flags = shlex.split(os.environ.get("AMSGRAD_CFLAGS_EXTRA", ""))
    return flags, [flag for flag in flags if flag.startswith("-fsanitize")]


def _reason(error: Exception) -> str:
    """One short line: the compiler command's name and source file rather than all its flags."""
    text = " ".join(str(error).split())
    command = re.search(r"Command '\['([^']*)'.*?'-c', '([^']*)'.*exit status (-?\d+)", text)
    if command:
        name, source, status = command.groups()
        text = f"{name} -c {source} exited with status {status}"
    text = f"{type(error).__name__}: {text}"
    return text if len(text) <= 240 else text[:237] + "..."


def _required() -> bool:
    return os.environ.get("AMSGRAD_REQUIRE_NATIVE", "").strip() not in ("", "0")


class BuildExt(build_ext):
    """Compiler-specific flags, and the failure policy of the optional kernel (see above)."""

    def build_extensions(self) -> None:
        extra_compile, extra_link = _extra_flags()
        for ext in self.extensions:
            if self.compiler.compiler_type == "msvc":
                ext.extra_compile_args = list(MSVC_COMPILE_ARGS)
                ext.extra_link_args = []
            ext.extra_compile_args = [*ext.extra_compile_args, *extra_compile]
            ext.extra_link_args = [*ext.extra_link_args, *extra_link]
            if ext.name == NATIVE and _required():
                ext.optional = False  # the error propagates: the install fails
        super().build_extensions()

    def build_extension(self, ext: Extension) -> None:
        if ext.name != NATIVE:
            super().build_extension(ext)
            return
        record = Path(os.path.dirname(self.get_ext_fullpath(ext.name))) / BUILD_ERROR_FILE
        try:
            super().build_extension(ext)
        except Exception as error:
            if not _required():
                record.parent.mkdir(parents=True, exist_ok=True)
                record.write_text(f"build of {ext.name} failed: {_reason(error)}\n", "utf-8")
            raise
        record.unlink(missing_ok=True)


NUMPY_HEADERS = _numpy_headers()

setup(
    ext_modules=[
        Extension(
            NATIVE,
            NATIVE_SOURCES,
            depends=NATIVE_HEADERS,
            include_dirs=NUMPY_HEADERS or [],
            define_macros=[("AMS_HAVE_NUMPY", "1")] if NUMPY_HEADERS else [],
            extra_compile_args=UNIX_COMPILE_ARGS,
            extra_link_args=UNIX_LINK_ARGS,
            optional=True,
        ),
        Extension(
            "amsgrad.apps._roofline",
            ["src/amsgrad/apps/roofline.c", f"{NATIVE_DIR}/pool.c"],
            include_dirs=[NATIVE_DIR],
            depends=[f"{NATIVE_DIR}/parallel.h"],
            extra_compile_args=UNIX_COMPILE_ARGS,
            extra_link_args=UNIX_LINK_ARGS,
            optional=True,
        ),
    ],
    cmdclass={"build_ext": BuildExt},
)
