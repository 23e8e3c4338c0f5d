# Two commands matter: `make run` and `make test`. Both set up everything they need.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Checked with mypy --strict: the common library and every service's pure domain code
# (domain.py, and any domain_*.py beside it), plus the pure modules named here.
TYPED := libs/common/bo_common libs/iso20022/bo_iso20022 tools/bo_tools/cpu_group.py $(wildcard services/*/*/domain.py) \
	$(wildcard services/*/*/domain_*.py) services/settlement/settlement/netting.py \
	services/settlement/settlement/penalties.py tools/bo_tools/ops/reconciliation.py

.PHONY: run test bench lint format typecheck install clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "needs $(PYTHON)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/bo run

# Starts its own broker and services on free ports and uses separate databases (bo_test_*),
# so it can run next to `make run`. pytest exits 5 when it collects no tests: that fails too.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy $(TYPED)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/bo bench --trades $${TRADES:-2000} --rate $${RATE:-200} --batch-trades $${BATCH_TRADES:-20000} --parts $${PARTS:-pipeline compliance ledger audit}

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: $(STAMP)
	$(BIN)/mypy $(TYPED)

clean:
	rm -rf $(VENV) var/log var/test var/bench
