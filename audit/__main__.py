"""``python -m audit``: the same as the ``audit`` command."""

import sys

from audit.cli.main import main

sys.exit(main())
