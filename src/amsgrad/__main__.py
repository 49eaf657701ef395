"""``python -m amsgrad``: the ``amsgrad`` command (see :mod:`amsgrad.cli`)."""

from amsgrad.cli import main

raise SystemExit(main())
