"""`python -m lightembed_export`: the lightembed-export command."""

import sys

from lightembed_export.cli import main

sys.exit(main())
