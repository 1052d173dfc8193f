# The README's contract: `make demo` and `make test` each set everything up from a clean clone.
PYTHON ?= python3
VENV ?= .venv
# A CPU build lies on this machine's disk; with a GPU, override: make demo TORCH="torch==2.13.0 --index-url <your CUDA index>"
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo-output

CHROMIUM ?= /usr/bin/chromium

.PHONY: setup browser postgres demo lint docs check test clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(TORCH)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

# The speedrun recipe wins on accuracy per second (99.2% in about 5 s here); try DEMO_TRAIN="--model cnn".
DEMO_TRAIN ?= --preset speedrun

demo: setup
	$(BIN)/mnistlab data fetch mnist
	$(BIN)/mnistlab data show mnist --out $(DEMO_OUT)/mnist-samples.png
	rm -rf $(DEMO_OUT)/run
	$(BIN)/mnistlab train $(DEMO_TRAIN) --dataset mnist --out $(DEMO_OUT)/run
	$(BIN)/mnistlab report $(DEMO_OUT)/run
	@echo "demo output: $(abspath $(DEMO_OUT)): mnist-samples.png, the trained run in run/, its report in run/report.html"

# The drawing-pad test drives Debian's chromium; install it when missing (as root, as on CI).
browser:
	@test -x $(CHROMIUM) || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
	  || { echo "the browser test needs chromium: sudo apt-get install chromium"; exit 1; }

# The sweep tests start their own PostgreSQL server from Debian's package; install it when missing.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) \
	  || { echo "the sweep tests need PostgreSQL: sudo apt-get install postgresql"; exit 1; }

lint: setup
	$(BIN)/ruff check .

# The manual as a site (MkDocs, Material, mkdocstrings) in site/; --strict: a broken link or reference fails it.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The fast tier, for while you work: the linter and every test that needs no real data, browser or database
# (about half a minute here); `make test` runs everything, as CI does.
check: lint
	$(BIN)/python -m pytest -m "not realdata" -q

test: setup browser postgres lint docs
	$(BIN)/python -m pytest --durations=15

clean:
	rm -rf $(VENV) build dist site src/*.egg-info .pytest_cache
