"""``python -m deepnn`` is the ``deepnn`` command."""

import sys

from .cli import main

sys.exit(main())
