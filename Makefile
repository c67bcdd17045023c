# Two entry points on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: install demo test typecheck soak lint bench golden clean

$(BIN)/edition: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/edition

demo: install
	$(BIN)/edition sample-data --customers 2000 --seed 7 --out data/customers.csv
	$(BIN)/edition run campaigns/weekly-newsletter.yaml --via-prefect --out out/demo/weekly-newsletter --overwrite
	$(BIN)/edition run campaigns/invoice.yaml --out out/demo/invoice --overwrite
	$(BIN)/edition versions campaigns/vip-offers-es.yaml
	$(BIN)/edition run campaigns/vip-offers-es.yaml --out out/demo/vip-offers-es --overwrite
	@echo "Open out/demo/weekly-newsletter/report.md (and out/demo/vip-offers-es/report.md:"
	@echo "an audience-limited campaign, most customers excluded with the reason)"

test: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -q -n 2 -m "not soak"

# mypy --strict on edition/ (pyproject.toml's [tool.mypy] says what and which overrides)
typecheck: install
	$(BIN)/mypy

# The long end-to-end runs (Dask clusters, kill -9 soaks, the browser tests, S3 leases):
# CI runs them after `make test`, so that the everyday suite stays short.
soak: install
	$(BIN)/pytest -q -n 2 -m soak

golden: install
	$(BIN)/python tests/test_golden.py --regenerate

bench: install
	$(BIN)/python bench/run.py

clean:
	rm -rf out .pytest_cache
