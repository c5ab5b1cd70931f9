# Two commands on a fresh clone: `make demo` and `make test`. Both bootstrap .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.prmforge-installed
# The CPU torch wheel lies on local disk on these machines; pip also reads PIP_FIND_LINKS.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

.PHONY: install demo test bench clean-data

install: $(STAMP)

# -qq: pip's errors only; the machines' extra indexes warn once per package they lack.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -qq --disable-pip-version-check $(FIND_LINKS) --no-deps -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

# Half the problems are held out, so Best-of-16 is measured on 60 problems (one is 1.7 points).
demo: $(STAMP)
	$(BIN)/prmforge generate --problems 120 --samples 4 --rollouts 4 --seed 0 --test-fraction 0.5
	$(BIN)/prmforge train --steps 150
	$(BIN)/prmforge train --kind orm
	$(BIN)/prmforge evaluate --model latest --bon-policy embedded --bon-samples 16 --report reports
	@echo
	$(BIN)/prmforge sql "select count(*) as labelled_steps from labeled_steps"
	@echo "warehouse: ./data   evaluation report: ./reports"

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	PYTHONPATH=. $(BIN)/python bench/generate_throughput.py

clean-data:
	rm -rf data .prefect reports
