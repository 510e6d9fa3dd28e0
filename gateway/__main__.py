"""``python -m gateway`` is ``obd-gateway``."""

import sys

from gateway.cli import main

sys.exit(main())
