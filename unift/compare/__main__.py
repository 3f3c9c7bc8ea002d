"""`python -m unift.compare ...` runs `unift compare ...`."""

import sys

from unift.compare.cli import main

sys.exit(main(sys.argv[1:]))
