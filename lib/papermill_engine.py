"""``python -m lib.papermill_engine <papermill arguments>``: papermill with the ``ipc`` engine
registered. The engine lives in lib.runs.engine; this name is the documented command's."""

from lib.runs.engine import IPCEngine, main

__all__ = ["IPCEngine", "main"]

if __name__ == "__main__":
    main()
