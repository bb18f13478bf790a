"""``python -m trio_kad``: the same as the ``trio-kad`` command."""

import sys

from .cli import main

sys.exit(main())
