"""The lib/ files that notebooks import, directly or through other lib modules (the Makefile's
prerequisites of each executed notebook, so an edit to lib/explain/cam.py does not re-run 01).

    python3 scripts/notebook_deps.py notebooks/01_eda.ipynb [...]   # one path a line

Standard library only: make runs it before the project's environment exists. Every import is
followed, those inside functions included.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "lib"


def notebook_source(path: Path) -> str:
    """The code cells of a notebook, IPython magics and shell lines left out."""
    cells = json.loads(path.read_text())["cells"]
    lines = []
    for cell in cells:
        if cell["cell_type"] == "code":
            source = "".join(cell["source"])
            lines += [line for line in source.splitlines()
                      if not line.lstrip().startswith(("%", "!"))]
    return "\n".join(lines)


def module_file(module: str, root: Path = ROOT) -> Path | None:
    """lib/x.py or lib/x/__init__.py for module "lib.x"; None where it is not a lib file."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = root.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(source: str, package: str | None = None) -> set[str]:
    """Dotted names of what ``source`` imports. ``from lib import x`` gives lib.x (a module)
    and lib; relative imports resolve against ``package`` (the importing module's package)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level and package:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def lib_dependencies(source: str, root: Path = ROOT) -> list[Path]:
    """The lib files ``source`` needs: what it imports, and what those import, to the end.
    Importing lib.x also runs lib/__init__.py (and a subpackage's __init__.py)."""
    found: set[Path] = set()
    queue = [(source, None)]
    while queue:
        code, package = queue.pop()
        for name in imported_modules(code, package):
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):  # lib, lib.synthetic, lib.synthetic.folder
                path = module_file(".".join(parts[:depth]), root)
                if path is None or path in found:
                    continue
                found.add(path)
                module = ".".join(parts[:depth])
                is_package = path.name == "__init__.py"
                queue.append((path.read_text(),
                              module if is_package else module.rpartition(".")[0]))
    return sorted(found)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    paths: set[Path] = set()
    for notebook in argv:
        path = Path(notebook)
        if not path.is_file():
            print(f"error: {notebook}: no such notebook", file=sys.stderr)
            return 2
        paths.update(lib_dependencies(notebook_source(path)))
    for path in sorted(paths):
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
