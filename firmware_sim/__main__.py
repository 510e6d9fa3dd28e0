"""``python -m firmware_sim`` = ``obd-gateway-sim``."""

import sys

from firmware_sim.cli import main

sys.exit(main())
