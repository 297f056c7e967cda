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
CACHE_DIR ?= cache
REPORTS ?= reports
CHECK_MD5 ?= True

PAPERMILL := $(BIN)/papermill --kernel python3 --log-level WARNING
DATA_ABS = $(abspath $(DATA_DIR))

.PHONY: setup data eda preprocess demo test lint lab clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

# The built-in synthetic data is generated once; any other DATA_DIR must already exist.
data: setup
	@if [ -f "$(DATA_DIR)/metadata.csv" ]; then echo "data: $(DATA_ABS)"; \
	elif [ "$(DATA_DIR)" = "$(SYNTH_DIR)" ]; then \
	  $(BIN)/python -m lib.synthetic $(DATA_DIR) --profile $(PROFILE) --seed $(SEED); \
	else echo "error: $(DATA_ABS)/metadata.csv not found (DATA_DIR must be a competition folder)"; exit 1; fi

eda: data
	@mkdir -p $(REPORTS)/notebooks
	$(PAPERMILL) notebooks/01_eda.ipynb $(REPORTS)/notebooks/01_eda.ipynb -p data_dir $(DATA_ABS)
	$(BIN)/jupyter nbconvert --log-level WARN --to html --output-dir $(REPORTS) $(REPORTS)/notebooks/01_eda.ipynb

preprocess: data
	@mkdir -p $(REPORTS)/notebooks
	$(PAPERMILL) notebooks/02_preprocess.ipynb $(REPORTS)/notebooks/02_preprocess.ipynb \
	  -p data_dir $(DATA_ABS) -p cache_dir $(abspath $(CACHE_DIR)) -p check_md5 $(CHECK_MD5)
	$(BIN)/jupyter nbconvert --log-level WARN --to html --output-dir $(REPORTS) $(REPORTS)/notebooks/02_preprocess.ipynb

# The main job on the data in DATA_DIR (default: the built-in synthetic data).
demo: eda preprocess
	@echo "reports: $(abspath $(REPORTS))/01_eda.html $(abspath $(REPORTS))/02_preprocess.html"

test: setup
	$(BIN)/ruff check lib tests scripts
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check lib tests scripts

lab: setup
	$(BIN)/jupyter lab notebooks

clean:
	rm -rf $(REPORTS) $(CACHE_DIR)
