from streamrec.cli import main
import sys
sys.exit(main())
