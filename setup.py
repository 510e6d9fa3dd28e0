"""Build hook: compiles native/*.pyx into gateway._native (the parser) and gateway._pump (the link pump).

A failed compile fails the install (no silent fallback, as msgpack learned in #568).
``OBD_GATEWAY_PURE=1 pip install .`` is the explicit way to install without the extension.
"""

import os
import sys

from setuptools import Extension, setup

PURE = os.environ.get("OBD_GATEWAY_PURE", "") not in ("", "0")

ext_modules = []
if PURE:
    print("obd-gateway: OBD_GATEWAY_PURE set, building the pure-Python parser only", file=sys.stderr)
else:
    from Cython.Build import cythonize

    print("obd-gateway: building the native parser (gateway._native)", file=sys.stderr)
    ext_modules = cythonize(
        # -ffp-contract=off: no fused multiply-add (aarch64 would fuse by default), so the formulas
        # round exactly as the pure-Python twin's do.
        [
            Extension("gateway._native", ["native/parser.pyx"], extra_compile_args=["-O2", "-ffp-contract=off"]),
            # the link pump (issue 19): a burst of request lines without the GIL
            Extension("gateway._pump", ["native/pump.pyx"], extra_compile_args=["-O2"]),
        ],
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False},
    )

setup(ext_modules=ext_modules)
