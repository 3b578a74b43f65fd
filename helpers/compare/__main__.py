"""`python -m helpers.compare`: every strategy side by side, outside Jupyter (see cli.py)."""

import sys

from helpers.compare.cli import main

sys.exit(main())
