# The whole set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
RUN    ?= runs/default
PROFILE ?= default
STAMP   = $(VENV)/.installed
DOCS_STAMP = $(VENV)/.docs-installed

.PHONY: install run test docs clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned: a CPU wheel of 2.13.0 is on these machines; an unpinned
	# torch would pull several GB of CUDA packages.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test,parquet,deploy,track]'
	touch $(STAMP)

install: $(STAMP)

# a fresh run with today's defaults: a run directory keeps the settings it was made with
# (RUN/run.yaml), so the previous run is kept as $(RUN).previous, not reused
run: $(STAMP)
	rm -rf $(RUN).previous
	test ! -d $(RUN) || mv $(RUN) $(RUN).previous
	$(BIN)/pakd run --dataset ml-latest-small --out $(RUN) --profile $(PROFILE)

test: $(STAMP)
	$(BIN)/python -m pytest

# the documentation site into site/ (MkDocs + Material; the CLI reference, API reference and
# results pages are generated while it builds); --strict fails on a broken link or page
$(DOCS_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) runs .pytest_cache site
