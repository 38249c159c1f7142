"""`python -m reelfeat COMMAND`, the same as the installed `reelfeat` command."""

import sys

from reelfeat.cli import main

sys.exit(main())
