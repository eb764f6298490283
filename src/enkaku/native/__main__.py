"""``python -m enkaku.native build``: see enkaku.native."""

import sys

from enkaku.native import main

sys.exit(main())
