import sys

from res2net.cli import main

sys.exit(main())
