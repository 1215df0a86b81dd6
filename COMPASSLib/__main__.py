"""`python -m COMPASSLib` is the `compass` command."""
import sys

from COMPASSLib.cli import main

if __name__ == "__main__":
    sys.exit(main())
