"""Plans and the parameters of their runs: a plan YAML (params/plans/...) expanded into one
RunSpec per model-fold-seed, each run's papermill parameters (params file, plan entry,
overrides), and the checks made before anything trains (every key a parameter of its notebook,
of the notebook's kind; folds in range). PlanError names the file and the entry.

Read by the sweep (lib.sweep) and by everything that needs a plan's runs without running them:
05_ensemble, 06_explain, the reports (lib.reports) and the measurement scripts.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from lib.core.paths import REPO_ROOT, project_path
from lib.runs.run_folder import default_run_dir

NOTEBOOKS = REPO_ROOT / "notebooks"
DEFAULT_NOTEBOOK = "03_train.ipynb"
PLAN_KEYS = {"params", "backbone", "seed"}  # and optionally "notebook" (default 03_train.ipynb)
# what checks a training notebook's parameters before it runs: "module:function", called with
# every parameter's value (ValueError naming the parameter)
RUN_CHECKS = {"03_train.ipynb": "lib.train.settings:check_run_parameters",
              "03b_train_features.ipynb": "lib.models.feature_settings:check_run_parameters"}


class PlanError(ValueError):
    """A plan, a params file or a parameter is wrong; the message names the file and entry."""


@dataclass(frozen=True)
class RunSpec:
    """One model-fold-seed: its parameters (params file + plan entry) and its folder."""

    params_file: Path
    name: str
    backbone: str
    seed: int
    fold: int
    run_dir: Path
    notebook: str = DEFAULT_NOTEBOOK
    device: str | None = None  # the device the sweep resolved for it (notebooks with one)

    @property
    def label(self) -> str:
        return "/".join(self.run_dir.parts[-3:])  # <name>/<backbone>/fold<k>_seed<s>



def load_plan(path: str | Path) -> dict:
    """A plan YAML: ``name``, ``folds`` (list) and ``runs`` (params, backbone, seed, and
    optionally notebook: a training notebook in notebooks/, default 03_train.ipynb; params
    files relative to params/ or absolute). PlanError names the plan file and the entry."""
    path = project_path(path)
    try:
        plan = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise PlanError(f"{path}: cannot read the plan ({error})") from None
    if not isinstance(plan, dict) or not isinstance(plan.get("runs"), list) or not plan["runs"]:
        raise PlanError(f"{path}: a plan needs a non-empty 'runs' list")
    for i, run in enumerate(plan["runs"]):
        keys = sorted(run) if isinstance(run, dict) else type(run).__name__
        if not isinstance(run, dict) or not PLAN_KEYS <= set(run) <= PLAN_KEYS | {"notebook"}:
            raise PlanError(f"{path}: run {i + 1} ({run!r}) must have params, backbone, seed "
                            f"and optionally notebook; got {keys}")
        if not (NOTEBOOKS / run.get("notebook", DEFAULT_NOTEBOOK)).is_file():
            raise PlanError(f"{path}: run {i + 1} ({run!r}): notebook {run['notebook']!r} "
                            f"not found in {NOTEBOOKS}")
        if not isinstance(run["seed"], int) or not isinstance(run["backbone"], str):
            raise PlanError(f"{path}: run {i + 1} ({run!r}): seed must be an integer and "
                            f"backbone a timm name")
    folds = plan.get("folds", [0, 1, 2, 3, 4])
    if not isinstance(folds, list) or not all(isinstance(f, int) for f in folds):
        raise PlanError(f"{path}: folds must be a list of integers, got {folds!r}")
    return {**plan, "path": str(path)}


def expand_plan(plan: dict, folds: list[int] | None = None, runs_dir: str | Path = "runs"
                ) -> list[RunSpec]:
    """The plan's runs x folds (``folds`` overrides the plan's), in plan order, fold-major
    within a run."""
    where = plan.get("path", "plan")
    specs, entry_of = [], {}
    for i, run in enumerate(plan["runs"]):
        params_file = Path(run["params"])
        if not params_file.is_absolute():
            params_file = project_path("params") / params_file
        values = _read_params(params_file, f"{where}: run {i + 1}")
        if not isinstance(values.get("name"), str):
            raise PlanError(f"{params_file}: needs a 'name' (named by {where}: run {i + 1})")
        folder = default_run_dir(values["name"], run["backbone"], 0, run["seed"], runs_dir)
        if folder in entry_of:
            first = entry_of[folder]
            raise PlanError(f"{where}: runs {first + 1} ({plan['runs'][first]!r}) and {i + 1} "
                            f"({run!r}) are the same run (name {values['name']!r}, backbone "
                            f"{run['backbone'].split('.')[0]!r}, seed {run['seed']}): keep one")
        entry_of[folder] = i
        for fold in folds if folds is not None else plan.get("folds", [0, 1, 2, 3, 4]):
            specs.append(RunSpec(params_file, values["name"], run["backbone"], int(run["seed"]),
                                 int(fold), default_run_dir(values["name"], run["backbone"],
                                                            fold, run["seed"], runs_dir),
                                 run.get("notebook", DEFAULT_NOTEBOOK)))
    return specs


def run_parameters(spec: RunSpec, overrides: dict) -> dict:
    """The papermill parameters of one run: params file, then the plan entry, then the
    overrides its notebook has (a mixed plan's override reaches the runs it can), then the
    device the sweep resolved."""
    values = dict(_read_params(spec.params_file, spec.label))
    values.update(backbone=spec.backbone, seed=spec.seed, fold=spec.fold,
                  run_dir=str(spec.run_dir))
    known = notebook_parameters(spec.notebook)
    values.update({key: value for key, value in overrides.items() if key in known})
    if spec.device is not None:
        values["device"] = spec.device
    return values


def check_parameters(specs: list[RunSpec], overrides: dict) -> dict[str, list[str]]:
    """PlanError unless every key of every params file is a parameter of its notebook and
    every override is a parameter of at least one notebook of the plan, naming the key, where
    it comes from and the nearest parameter (papermill would only warn, and the run would
    train with the default). Returns {override: [labels of the runs whose notebook lacks it]}
    for the overrides that do not reach every run (a mixed plan: 03b has no ``epochs``)."""
    for params_file, notebook in dict.fromkeys((s.params_file, s.notebook) for s in specs):
        known = notebook_parameters(notebook)
        for key, value in _read_params(params_file, "").items():
            if key not in known:
                raise PlanError(f"{params_file}: {unknown_parameter(key, known, [notebook])}")
            _check_type(key, value, notebook, str(params_file))
    notebooks = list(dict.fromkeys(s.notebook for s in specs))
    every = frozenset().union(*(notebook_parameters(n) for n in notebooks))
    skipped = {}
    for key, value in overrides.items():
        if key not in every:
            raise PlanError(f"-p / command line: {unknown_parameter(key, every, notebooks)}")
        for notebook in notebooks:
            if key in notebook_parameters(notebook):
                _check_type(key, value, notebook, "-p / command line")
        missed = [s.label for s in specs if key not in notebook_parameters(s.notebook)]
        if missed:
            skipped[key] = missed
    return skipped


def check_folds(specs: list[RunSpec], overrides: dict) -> None:
    """PlanError unless every run's fold is in 0..n_folds-1 (its n_folds parameter)."""
    for spec in specs:
        n_folds = run_parameters(spec, overrides).get(
            "n_folds", parameter_defaults(spec.notebook).get("n_folds"))
        if isinstance(n_folds, int) and not 0 <= spec.fold < n_folds:
            raise PlanError(f"fold {spec.fold} ({spec.label}): the runs have n_folds="
                            f"{n_folds}, so folds are 0..{n_folds - 1}")


def check_runs(specs: list[RunSpec], overrides: dict) -> None:
    """PlanError naming the params file and the run when a run's parameters (its notebook's
    defaults, the params file, the plan entry, the overrides) fail its notebook's check
    (RUN_CHECKS: an unknown backbone or learner, a hidden size of 0, a head a 1D model cannot
    take, ...), so nothing starts training with them. Each distinct configuration is checked
    once (folds do not matter)."""
    checked = set()
    for spec in specs:
        if spec.notebook not in RUN_CHECKS:
            continue
        values = {**parameter_defaults(spec.notebook), **run_parameters(spec, overrides)}
        key = json.dumps({k: v for k, v in values.items() if k not in ("fold", "run_dir")},
                         sort_keys=True, default=str) + spec.notebook
        if key in checked:
            continue
        checked.add(key)
        module, function = RUN_CHECKS[spec.notebook].split(":")
        try:
            getattr(importlib.import_module(module), function)(values)
        except (ValueError, TypeError) as error:
            named = sorted(set(overrides) - {"data_dir", "cache_dir"})
            where = f" (with {named} from the command line)" if named else ""
            raise PlanError(f"{spec.params_file}{where}, run {spec.label}: {error}") from None


def _check_type(key: str, value, notebook: str, source: str) -> None:
    """PlanError unless ``value`` has the kind of the notebook's default for ``key``: a
    string, a list, a whole number or any number (a bool only where the default is one)."""
    default = parameter_defaults(notebook).get(key)
    if default is None:
        return
    kinds = [(bool, (bool,), "true or false"), (int, (int,), "a whole number"),
             (float, (int, float), "a number"), (str, (str,), "a string"),
             (list, (list, tuple), "a list")]
    for kind, accepted, words in kinds:
        if isinstance(default, kind):
            if isinstance(value, bool) != (kind is bool) or not isinstance(value, accepted):
                raise PlanError(f"{source}: {key} = {value!r} must be {words} (notebooks/"
                                f"{notebook}'s default is {default!r})")
            return


def unknown_parameter(key: str, known: frozenset[str], notebooks: list[str]) -> str:
    """"'KEY' is not a parameter of notebooks/N; did you mean 'K'? (known: ...)"."""
    near = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    where = " or ".join(f"notebooks/{n}" for n in notebooks)
    return f"{key!r} is not a parameter of {where}{hint} (known: {', '.join(sorted(known))})"


@lru_cache
def notebook_parameters(notebook: str) -> frozenset[str]:
    """The names assigned in a notebook's cell tagged "parameters" (what papermill.inspect_notebook
    finds, read without importing papermill, which would cost the sweep seconds)."""
    return frozenset(parameter_defaults(notebook))


def parameter_defaults(notebook: str) -> dict:
    """{name: default value (None if not a literal)} of a notebook's parameters cell."""
    cells = json.loads((NOTEBOOKS / notebook).read_text())["cells"]
    source = next("".join(c["source"]) for c in cells
                  if "parameters" in c.get("metadata", {}).get("tags", []))
    defaults = {}
    for statement in ast.parse(source).body:
        if isinstance(statement, (ast.Assign, ast.AnnAssign)):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    try:
                        defaults[target.id] = ast.literal_eval(statement.value)
                    except ValueError:
                        defaults[target.id] = None
    return defaults


def _read_params(path: Path, named_by: str) -> dict:
    if not path.is_file():
        raise PlanError(f"{named_by}: params file {path} not found")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise PlanError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(values, dict):
        raise PlanError(f"{path}: a params file is a mapping of parameter: value")
    return values
