"""Build of the optional native kernel ``amsgrad._native`` (metadata lives in pyproject.toml).

The extension is plain C11 with the CPython API and the buffer protocol: NumPy is not a build
dependency. ``optional=True``: without a working C compiler the install still succeeds and the
package runs on its NumPy path.

Flags: -O3; -ffp-contract=off because a fused multiply-add changes the results (the kernel must be
bit-exact); no -ffast-math; no -march=native (the wheel must run on any x86-64: the AVX2/F16C code
is compiled per function with __attribute__((target)) and chosen at run time).
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

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


class BuildExt(build_ext):
    """Use MSVC's spelling of the flags when the compiler is MSVC."""

    def build_extensions(self) -> None:
        if self.compiler.compiler_type == "msvc":
            for ext in self.extensions:
                ext.extra_compile_args = list(MSVC_COMPILE_ARGS)
                ext.extra_link_args = []
        super().build_extensions()


setup(
    ext_modules=[
        Extension(
            "amsgrad.core._native",
            ["src/amsgrad/core/native/module.c"],
            extra_compile_args=UNIX_COMPILE_ARGS,
            extra_link_args=UNIX_LINK_ARGS,
            optional=True,
        )
    ],
    cmdclass={"build_ext": BuildExt},
)
