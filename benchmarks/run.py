"""Run the benchmark suite: ``python benchmarks/run.py [--quick] [--out DIR] ...``.

A thin wrapper around :func:`amsgrad.apps.bench.main` (also reachable as ``amsgrad bench`` and
``python -m amsgrad.apps.bench``); ``--help`` lists the options and ``benchmarks/README.md`` explains
the output.
"""

import sys

from amsgrad.apps.bench import main

if __name__ == "__main__":
    sys.exit(main())
