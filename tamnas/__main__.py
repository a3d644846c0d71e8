"""`python -m tamnas` is the `tamnas` command."""

import sys

from tamnas.cli import main

sys.exit(main())
