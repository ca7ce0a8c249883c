"""``python -m verifier``: the same as the ``mintverify`` command."""

import sys

from verifier.cli import main

sys.exit(main())
