"""``python -m diag`` = the ``diag`` command."""

import sys

from diag.cli import main

sys.exit(main())
