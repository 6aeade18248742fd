# The whole set-up on a fresh machine: `make run` and `make test`.
# Both install exactly requirements.lock first (docs/reproducibility.md); `make lock`
# refreshes the lock after pyproject.toml's dependency lists change.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
RUN    ?= runs/default
PROFILE ?= default
STAMP   = $(VENV)/.installed
LOCK    = requirements.lock
# e.g. `make lock LOCK_ARGS=--upgrade` (every package to its newest allowed release) or
# LOCK_ARGS='--upgrade-package numpy'; without it the lock's pins are kept where they still fit
LOCK_ARGS ?=

.PHONY: install run test test-slow docs clean lock check-lock

# a lock out of date with pyproject.toml is named (with the fix), never installed
check-lock:
	@$(PYTHON) src/pakd/lockfile.py check

# exactly the lock: every package pinned and hash-checked (pip, setuptools and the torch
# 2.13.0 CPU wheel included), then pip-sync removes whatever the lock does not hold
# (pakd itself too, so it is put back last, from this checkout, with no dependency resolution)
$(STAMP): $(LOCK) pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip-sync --quiet $(LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: check-lock $(STAMP)

# a fresh run with today's defaults: a run directory keeps the settings it was made with
# (RUN/run.yaml), so the previous run is kept as $(RUN).previous, not reused
run: check-lock $(STAMP)
	rm -rf $(RUN).previous
	test ! -d $(RUN) || mv $(RUN) $(RUN).previous
	$(BIN)/pakd run --dataset ml-latest-small --out $(RUN) --profile $(PROFILE)

test: check-lock $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

test-slow: check-lock $(STAMP)
	$(BIN)/python -m pytest -m slow

# every dependency and extra of pyproject.toml, resolved for this machine's Python and
# pinned with hashes; torch pinned to the local CPU wheel by lock-constraints.txt
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(BIN)/pip-compile || $(BIN)/pip install --quiet 'pip-tools>=7.4'
	CUSTOM_COMPILE_COMMAND='make lock' $(BIN)/pip-compile --quiet --all-extras \
	    --generate-hashes --allow-unsafe --all-build-deps --strip-extras \
	    --no-emit-index-url --no-emit-find-links --constraint lock-constraints.txt \
	    $(LOCK_ARGS) --output-file $(LOCK) pyproject.toml
	$(PYTHON) src/pakd/lockfile.py stamp

# the documentation site into site/ (MkDocs + Material, in the lock; the CLI reference, API
# reference and results pages are generated while it builds); --strict fails on a broken
# link or page
docs: check-lock $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) runs .pytest_cache site
