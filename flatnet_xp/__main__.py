"""``python -m flatnet_xp``: the same as the ``flatnet-xp`` command."""

import sys

from flatnet_xp.cli import main

sys.exit(main())
