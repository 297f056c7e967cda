"""papermill I/O handlers (entry-point group "papermill.io", registered in pyproject.toml).

- Output paths under runs/ ("runs/", "./runs/"): papermill refuses to write a notebook into a
  folder that does not exist, which would make `papermill notebooks/03_train.ipynb
  runs/<name>/<backbone>/fold0_seed3/03_train.ipynb ...` fail for every new run; this handler
  creates the folder first.
- No output path ("-", papermill's standard output): the notebook is printed to standard output
  as papermill does, and when it is a training notebook that finished its run (DONE in its run
  folder, no failed cell) a copy is also kept in the run folder, so the bare form
  `papermill notebooks/03_train.ipynb -f params/x.yaml` keeps what the design promises.
Everything else goes to papermill's own handlers.
"""

import ast
import json
import os
import sys
from pathlib import Path

from papermill.iorw import LocalHandler, StreamHandler


class RunFolderHandler(LocalHandler):
    """LocalHandler that makes the parent folders of the notebook it writes."""

    def write(self, buf, path):
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        return super().write(buf, path)


class StdoutCopyHandler(StreamHandler):
    """papermill's "-" handler, plus a copy of a finished run's notebook in its run folder."""

    def write(self, buf, path):
        written = super().write(buf, path)
        try:
            kept = keep_run_copy(buf)
        except Exception as error:  # the stdout copy is what the user asked for; never fail it
            print(f"lib.runs.papermill_io: no copy kept in the run folder ({error})",
                  file=sys.stderr)
        else:
            if kept:
                print(f"executed notebook kept at {kept}", file=sys.stderr)
        return written


def keep_run_copy(buf: str) -> Path | None:
    """Write the executed notebook ``buf`` into its run folder if it is a training notebook
    (its parameters include run_dir) whose run finished in this execution (DONE there, no cell
    failed). The folder follows lib.runs.resolve_run_dir with the notebook's own defaults.
    Returns the path written, or None."""
    meta = json.loads(buf).get("metadata", {}).get("papermill", {})
    input_path = meta.get("input_path")
    if meta.get("exception") or not input_path or input_path == "-":
        return None
    import papermill

    values = {}
    for name, info in papermill.inspect_notebook(input_path).items():
        try:
            values[name] = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            continue
    values.update(meta.get("parameters") or {})
    if "run_dir" not in values:
        return None
    from lib.core.files import atomic_write_text
    from lib.runs.run_folder import is_done, resolve_run_dir

    run_dir = resolve_run_dir(values["run_dir"], None, values.get("name", ""),
                              values.get("backbone", ""), values.get("fold", 0),
                              values.get("seed", 0))
    if not is_done(run_dir):
        return None
    return atomic_write_text(run_dir / Path(input_path).name, buf)


runs_handler = RunFolderHandler()
stdout_handler = StdoutCopyHandler()
