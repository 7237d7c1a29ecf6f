"""``python -m infra.local``: the entry point of ``make run``."""

import sys

from infra.local.stack import main

sys.exit(main())
