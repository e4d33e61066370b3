"""``python -m specssl`` = the ``specssl`` command."""

import sys

from specssl.cli import main

sys.exit(main())
