import sys

from nb2container.cli import main

sys.exit(main())
