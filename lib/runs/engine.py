"""The papermill engine "ipc" (entry-point group "papermill.engine", registered in
pyproject.toml): `papermill --engine ipc ...` is papermill's own nbclient engine with the kernel
on Unix sockets in a private folder (mode 0700) instead of TCP ports on 127.0.0.1. Only the
user who runs papermill can reach the kernel, and ipykernel has no cause to warn that it runs
"over TCP without encryption". The Makefile and the sweep execute notebooks with it.

The kernel also gets TQDM_DISABLE=1 in its environment (tqdm's own override of its
``disable`` argument): a notebook executed headless has nobody watching its progress bars, and
every refresh of a text bar would be saved as one more stderr output of the cell (160 in one
executed 03_train), each a pink block in the rendered report. Opened in JupyterLab, the same
notebook still shows its bars.
"""

import os
import shutil
import tempfile

# A Unix socket's path has at most 107 bytes on Linux; the kernel's are <folder>/kernel-<n>
IPC_PATH_MAX = 100
# (variable, value) in the kernel's environment: tqdm reads TQDM_<argument> as that argument
QUIET_BARS = ("TQDM_DISABLE", "1")


def ipc_socket_folder() -> str:
    """A new private folder (mode 0700) for a kernel's sockets, in the temporary folder
    (TMPDIR: the run's scratch folder under a sweep) or, where that path is too long for a
    Unix socket, in /tmp."""
    base = tempfile.gettempdir()
    if len(os.path.join(base, "kernel-xxxxxxxx", "kernel-10")) > IPC_PATH_MAX:
        base = "/tmp"
    return tempfile.mkdtemp(prefix="kernel-", dir=base)


class IPCEngine:
    """papermill's nbclient engine with the kernel on Unix sockets (see the module text).

    It hands every call to papermill's NBClientEngine, imported only when called: papermill
    imports this module while it registers its engines at its own import, so importing
    papermill here would make the two imports wait on each other."""

    @staticmethod
    def _nbclient():
        from papermill.engines import NBClientEngine

        return NBClientEngine

    @classmethod
    def nb_kernel_name(cls, nb, name=None):
        return cls._nbclient().nb_kernel_name(nb, name)

    @classmethod
    def nb_language(cls, nb, language=None):
        return cls._nbclient().nb_language(nb, language)

    @classmethod
    def execute_notebook(cls, nb, kernel_name, **kwargs):
        from traitlets.config import Config

        folder = ipc_socket_folder()
        config = Config({"KernelManager": {"transport": "ipc",
                                           "ip": os.path.join(folder, "kernel")}})
        # the kernel inherits this process's environment when it starts
        before = os.environ.get(QUIET_BARS[0])
        os.environ[QUIET_BARS[0]] = QUIET_BARS[1]
        try:
            return cls._nbclient().execute_notebook(nb, kernel_name, config=config, **kwargs)
        finally:
            if before is None:
                os.environ.pop(QUIET_BARS[0], None)
            else:
                os.environ[QUIET_BARS[0]] = before
            shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    """`python -m lib.runs.engine <papermill arguments>` (or lib.papermill_engine): papermill's
    command line with this engine registered, also where the project is importable but not
    pip-installed (the sweep runs notebooks this way, with --engine ipc)."""
    from papermill.__main__ import papermill
    from papermill.engines import papermill_engines

    papermill_engines.register("ipc", IPCEngine)
    papermill(prog_name="papermill")


if __name__ == "__main__":
    main()
