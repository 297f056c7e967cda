"""``python -m lib.sweep PLAN [options]``: see lib.sweep.cli.

The tasks' functions live in lib.sweep.tasks, not in __main__: Dask pickles them by reference,
which a scheduler and workers started elsewhere (`dask scheduler`) can load.
"""

import sys

from lib.sweep.cli import main

sys.exit(main())
