"""Allow ``python -m matdesign.cli``."""

import sys

from matdesign.cli import main

sys.exit(main())
