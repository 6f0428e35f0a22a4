"""``python -m baton_worker``: the same as ``python -m baton_worker.bus``."""

import sys

from .bus import main

sys.exit(main())
