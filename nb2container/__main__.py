from nb2container.cli import main
import sys
sys.exit(main())
