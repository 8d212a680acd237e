"""``python -m medfeat`` (and ``torchrun -m medfeat``): the same as the ``medfeat`` command."""

from medfeat.cli.main import main

raise SystemExit(main())
