# The README's two commands: `make demo` and `make test`. Both create/reuse .venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
EXTRAS ?= ros,bag,onnx,ml,train,deepspeed,dev
# hashes what pip installs from, not comments: editing a comment of constraints.txt reinstalls nothing
STAMP := $(VENV)/.installed-$(shell { cat setup.py; grep -v "^#" constraints.txt; } | sha256sum | cut -c1-12)
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install demo test test-fast lint bench clean

$(STAMP):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[$(EXTRAS)]'
	touch $@

install: $(STAMP)

# Main job: bundled default model on a bundled sample clip -> depth PNGs, .npz, preview video,
# and a ROS 2 bag processed by the same pipeline the live node uses.
demo: install
	$(PY) -m vdepth_ros.demo --out out/demo

# Full suite, slow tests included (they are marked, not skipped). Two workers, one test file each at a
# time (pytest-xdist --dist loadfile): most of the suite waits on processes, discovery and real-time
# streams rather than computing, so two files at once take about half the time on 2 cores.
# A worker that dies (a test ending the process) fails the run at once: replaced workers left
# xdist's loadfile scheduler waiting forever.
# The 20 slowest tests are listed: the suite must stay under CI's 30 minutes, and CI's own machine says where it goes.
test: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
	$(PY) -m pytest test -q -ra --timeout=900 -n 2 --dist loadfile --max-worker-restart 0 --durations=20

test-fast: install
	$(PY) -m pytest test -q -ra -m "not slow"

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: install
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) out build *.egg-info
