"""`python -m foresight ...` (and `torchrun -m foresight train ...`) run the CLI."""

import sys

from foresight.cli import main

sys.exit(main())
