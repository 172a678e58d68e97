import sys

from lddpm.cli import main

sys.exit(main())
