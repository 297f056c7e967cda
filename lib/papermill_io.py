"""A papermill I/O handler for output paths under runs/: it creates the run folder first.

papermill refuses to write a notebook into a folder that does not exist, which would make
`papermill notebooks/03_train.ipynb runs/<name>/<backbone>/fold0_seed3/03_train.ipynb ...` fail
for every new run. pyproject.toml registers this handler for paths starting with "runs/" or
"./runs/" (entry-point group "papermill.io"); everything else goes to papermill's own handler.
"""

import os

from papermill.iorw import LocalHandler


class RunFolderHandler(LocalHandler):
    """LocalHandler that makes the parent folders of the notebook it writes."""

    def write(self, buf, path):
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        return super().write(buf, path)


runs_handler = RunFolderHandler()
