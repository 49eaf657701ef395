"""Run the benchmark suite: ``python benchmarks/run.py [--quick] [--out DIR] ...``.

A thin wrapper around :func:`amsgrad.bench.main` (also reachable as ``amsgrad bench`` and
``python -m amsgrad.bench``); ``--help`` lists the options and ``benchmarks/README.md`` explains
the output.
"""

import sys

from amsgrad.bench import main

if __name__ == "__main__":
    sys.exit(main())
