import sys

from cosmic_tl.cli import main

sys.exit(main())
