"""``python -m amsgrad``: the ``amsgrad`` command (see :mod:`amsgrad.apps.cli`)."""

from amsgrad.apps.cli import main

raise SystemExit(main())
