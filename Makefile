# `make demo` and `make test` both create .venv on first use and install matdesign into it.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint chromium clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# The example design campaign (examples/refractory_hea_demo.yaml) on the shipped NbMoTaW model.
# Re-running resumes the campaign in out/demo/campaign.db instead of repeating it.
demo: $(STAMP)
	mkdir -p out/demo
	$(BIN)/matdesign design examples/refractory_hea_demo.yaml --db out/demo/campaign.db --workers 2
	$(BIN)/matdesign report out/demo/campaign.db --out out/demo/report
	@echo "Report: $(CURDIR)/out/demo/report/index.html"

test: $(STAMP)
	OMP_NUM_THREADS=2 $(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(BIN)/ruff check matdesign properties search tests benchmarks examples

# Headless Chromium for the report screenshot test (skipped without it).
chromium:
	bash benchmarks/install_chromium.sh

clean:
	rm -rf $(VENV) build *.egg-info
