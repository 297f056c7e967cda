"""Where things live. Relative paths in notebook parameters mean "relative to the repository",
so a notebook behaves the same in JupyterLab (cwd notebooks/), under papermill, or in a test."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]  # lib/core/paths.py -> the repository


def project_path(path: str | Path) -> Path:
    """An absolute path: ``path`` itself if absolute, else ``REPO_ROOT / path``."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


def dataset_work_dir(cache_dir: str | Path, data_dir: str | Path) -> Path:
    """The folder for everything derived from one data folder (folds, image caches):
    ``cache_dir/<data folder name>``."""
    return project_path(cache_dir) / project_path(data_dir).resolve().name
