# The front door. `make demo` and `make test` set up the environment themselves when needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed first and pinned (<= 2.14.1 is what the project supports); override for
# another build, e.g. make setup TORCH="torch==2.14.1 --index-url https://download.pytorch.org/whl/cpu"
TORCH ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed

SYNTH_DIR := data/synthetic_small
DATA_DIR ?= $(SYNTH_DIR)
PROFILE ?= small
SEED ?= 0
CHECK_MD5 ?= True
PLAN ?= params/plans/demo.yaml
WORKERS ?= 2
EXPLAIN_SAMPLES ?= 24
# 05 also fits the 3rd place's dense network (15 networks: minutes on 2 cores) when True
THIRD_PLACE ?= False

DATA_ABS = $(abspath $(DATA_DIR))
DATASET = $(notdir $(DATA_ABS))
META = $(DATA_DIR)/metadata.csv
CACHE_DIR ?= cache
RUNS_DIR ?= runs/$(DATASET)
REPORTS ?= reports/$(DATASET)
ENSEMBLE_DIR = $(RUNS_DIR)/ensembles/$(basename $(notdir $(PLAN)))
SWEEP_STAMP = $(RUNS_DIR)/.sweep_$(basename $(notdir $(PLAN)))
EXECUTED = $(REPORTS)/notebooks
# The lib/ files a notebook imports, directly or through other lib modules: an edit re-runs
# only the notebooks that use the file.
lib_deps = $(shell $(PYTHON) scripts/notebook_deps.py notebooks/$(1).ipynb)
# --engine ipc: the kernel on Unix sockets that only this user can reach (lib/papermill_engine.py)
PAPERMILL = $(BIN)/papermill --kernel python3 --engine ipc --log-level WARNING

.PHONY: setup data demo report test test-fast lint lab clean wheelhouse benchmarks-doc FORCE

setup: $(STAMP)

# A new environment needs about SETUP_GIB GiB (the default torch is a CUDA build of ~5.5 GB):
# checked first, so a full disk is named before pip fails half-way (SETUP_GIB=0: no check).
SETUP_GIB ?= 8

# The venv is made (again) when its python cannot run pip: none yet, or a setup interrupted
# while the venv was being made. A VENV folder that is no venv (no pyvenv.cfg) is left alone
# and named.
$(STAMP): pyproject.toml
	@if ! $(BIN)/python -m pip --version >/dev/null 2>&1; then \
	  if [ -e $(VENV) ] && [ ! -f $(VENV)/pyvenv.cfg ]; then \
	    echo "error: $(VENV) exists but is no virtual environment (an interrupted setup?): delete it (rm -rf $(VENV)) or set VENV" >&2; exit 1; fi; \
	  if [ -e $(VENV) ]; then echo "note: $(VENV) cannot run pip (an interrupted setup?): making it again"; fi; \
	  $(PYTHON) scripts/check_disk.py $(dir $(abspath $(VENV))) '$(SETUP_GIB)' || exit 1; \
	  echo "$(PYTHON) -m venv --clear $(VENV)"; $(PYTHON) -m venv --clear $(VENV) || exit 1; \
	fi
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

# The built-in synthetic data is generated once; any other DATA_DIR must already exist.
$(META): | $(STAMP)
	@if [ "$(DATA_DIR)" = "$(SYNTH_DIR)" ]; then \
	  $(BIN)/python -m lib.synthetic $(DATA_DIR) --profile $(PROFILE) --seed $(SEED); \
	else echo "error: $(DATA_ABS)/metadata.csv not found (DATA_DIR must be a competition folder)"; exit 1; fi

data: $(META)

# The built-in synthetic data's ground truth; a folder generated before truth files existed
# gets one (the runs are simulated again and checked against their md5, not rewritten).
$(SYNTH_DIR)/truth.csv: | $(META)
	$(BIN)/python -m lib.synthetic $(SYNTH_DIR) --profile $(PROFILE) --seed $(SEED) --truth-only
TRUTH = $(if $(filter $(SYNTH_DIR),$(DATA_DIR)),$(SYNTH_DIR)/truth.csv)

$(EXECUTED)/01_eda.ipynb: notebooks/01_eda.ipynb $(META) $(call lib_deps,01_eda) | $(STAMP)
	@mkdir -p $(EXECUTED)
	$(PAPERMILL) notebooks/01_eda.ipynb $@ -p data_dir $(DATA_ABS)

$(EXECUTED)/02_preprocess.ipynb: notebooks/02_preprocess.ipynb $(META) \
  $(call lib_deps,02_preprocess) | $(STAMP)
	@mkdir -p $(EXECUTED)
	$(PAPERMILL) notebooks/02_preprocess.ipynb $@ -p data_dir $(DATA_ABS) \
	  -p cache_dir $(abspath $(CACHE_DIR)) -p check_md5 $(CHECK_MD5)

# Every run of the plan on every fold; finished runs are skipped. The stamp changes only when
# a run finished, so the ensemble is recomputed only then.
$(SWEEP_STAMP): $(EXECUTED)/02_preprocess.ipynb FORCE
	$(BIN)/python -m lib.sweep $(PLAN) --workers $(WORKERS) --data-dir $(DATA_ABS) \
	  --cache-dir $(abspath $(CACHE_DIR)) --runs-dir $(abspath $(RUNS_DIR)) --stamp $@

$(EXECUTED)/05_ensemble.ipynb: notebooks/05_ensemble.ipynb $(SWEEP_STAMP) \
  $(call lib_deps,05_ensemble) | $(STAMP)
	@mkdir -p $(EXECUTED)
	$(PAPERMILL) notebooks/05_ensemble.ipynb $@ -p plan $(PLAN) -p runs_dir $(abspath $(RUNS_DIR)) \
	  -p data_dir $(DATA_ABS) -p cache_dir $(abspath $(CACHE_DIR)) -p output_dir $(abspath $(ENSEMBLE_DIR)) \
	  -p third_place $(THIRD_PLACE)

# Explanations of the ensemble's models (scored when DATA_DIR has truth.csv); the scores go
# beside submission.csv.
$(EXECUTED)/06_explain.ipynb: notebooks/06_explain.ipynb $(EXECUTED)/05_ensemble.ipynb \
  $(call lib_deps,06_explain) \
  | $(STAMP) $(TRUTH)
	@mkdir -p $(EXECUTED)
	$(PAPERMILL) notebooks/06_explain.ipynb $@ -p plan $(PLAN) -p runs_dir $(abspath $(RUNS_DIR)) \
	  -p data_dir $(DATA_ABS) -p cache_dir $(abspath $(CACHE_DIR)) -p n_samples $(EXPLAIN_SAMPLES) \
	  -p output_dir $(abspath $(ENSEMBLE_DIR))

report: $(EXECUTED)/01_eda.ipynb $(EXECUTED)/02_preprocess.ipynb $(EXECUTED)/05_ensemble.ipynb \
  $(EXECUTED)/06_explain.ipynb
	$(BIN)/python -m lib.reports --reports $(REPORTS) --plan $(PLAN) --runs-dir $(RUNS_DIR) \
	  --ensemble-dir $(ENSEMBLE_DIR) --data-dir $(DATA_ABS)

# The main job on the data in DATA_DIR (default: the built-in synthetic data).
demo: report
	@echo "submission: $(abspath $(ENSEMBLE_DIR))/submission.csv"

test: lint
	$(BIN)/python -m pytest -q

# The quick loop while changing code: every test not marked slow (no training, no Dask or
# Slurm cluster, no notebook execution), on every core (pytest-xdist; TEST_WORKERS=0: in one).
TEST_WORKERS ?= auto
test-fast: lint
	$(BIN)/python -m pytest -q -m "not slow" -n $(TEST_WORKERS)

# ruff, then lib/'s layers and the absence of import cycles (import-linter's contracts in
# pyproject.toml)
lint: setup
	$(BIN)/ruff check lib tests scripts
	$(BIN)/lint-imports --no-cache --no-logo

# Jupyter refuses to start as root (e.g. in a container) unless told: --allow-root for user id 0
USER_ID ?= $(shell id -u)
lab: setup
	$(BIN)/jupyter lab notebooks $(if $(filter 0,$(USER_ID)),--allow-root)

# Wheels for an offline GPU machine that has its own torch and timm (docs/gpu.md, "An offline GPU
# machine): what scripts/gpu_check.py needs besides them, for another Python and platform.
WHEEL_PYTHON ?= 3.12
WHEEL_PLATFORM ?= manylinux_2_28_x86_64
WHEELHOUSE ?= wheelhouse
WHEELHOUSE_MAX_MIB ?= 56
wheelhouse:
	$(PYTHON) scripts/wheelhouse.py --python-version $(WHEEL_PYTHON) --platform $(WHEEL_PLATFORM) \
	  --dest $(WHEELHOUSE) --max-mib $(WHEELHOUSE_MAX_MIB)

# docs/benchmarks.md from benchmarks/*.json (what the benchmark scripts wrote: machine, date,
# command, figures), and README's demo results block from benchmarks/demo_small.json.
benchmarks-doc: setup
	$(BIN)/python scripts/render_benchmarks.py

clean:
	rm -rf $(REPORTS) $(CACHE_DIR)/$(DATASET)

FORCE:
