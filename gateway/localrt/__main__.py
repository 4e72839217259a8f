"""``python -m gateway.localrt [--host H] [--port P]``."""

import sys

from .server import main

sys.exit(main())
