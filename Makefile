# The README's commands. Everything runs offline once the packages are installed.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch/torchvision versions that this project's CI machines carry locally
TORCH  ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install test test-fast demo bench docs clean

# Bytecode: pip does not byte-compile what it installs (--no-compile: 75 of the install's 180 s on a
# 2-core machine, serial, for 27,000 modules of which the suite imports a fifth); Python compiles a
# module the first time a process imports it and keeps the .pyc in the venv. That needs Python to
# write bytecode, so this Makefile's commands run without PYTHONDONTWRITEBYTECODE (some CI machines
# set it): with neither pip's nor Python's .pyc, every Ray worker, CLI child and torchrun process
# compiled torch, Ray and transformers from source again (the suite took 4 min longer). Python
# ignores a .pyc older than its source, so editing stays safe.
unexport PYTHONDONTWRITEBYTECODE

# torch's bytecode is the exception: every worker and child process imports torch first (5.5 of
# the 9.3 s of a cold `import torch, torchvision` here), so it is compiled while pip installs the
# rest, on the core pip's single thread leaves idle (best effort: a module left out is compiled
# on first import; the log is $(VENV)/compile.log).
$(BIN)/.installed: pyproject.toml examples/hub-plugin-example/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --no-compile $(TORCH)
	@site=$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	$(BIN)/python -m compileall -q "$$site/torch" "$$site/torchvision" > $(VENV)/compile.log 2>&1 & \
	echo "$(BIN)/pip install -q --no-compile -e '.[all,test]'"; \
	$(BIN)/pip install -q --no-compile -e '.[all,test]'; installed=$$?; wait; exit $$installed
	$(BIN)/pip install -q --no-compile --no-build-isolation -e examples/hub-plugin-example
	touch $@

install: $(BIN)/.installed

# ruff and mypy come with the test extra; their settings are in pyproject.toml
.PHONY: lint
lint: install
	$(BIN)/ruff check hub plugins
	$(BIN)/mypy

# The suite in parallel: JOBS pytest-xdist worker processes (a worker runs torch on one thread).
# Tests that share a module fixture run on one worker, the others spread test by test, the longest
# units first (tests/conftest.py); the workers share the zoo's random-weight builds on disk. Two
# workers and their child processes peaked at 10 GiB together (sampled); more workers need more
# memory. (A whole-suite crash, SIGSEGV with no traceback, was traced to OpenVINO: each
# openvino.Core swaps in its own signal stack and restores a stale one when Cores die out of order;
# hub.runtimes.openvino keeps one Core per process, and each worker is a process.) JOBS=0 runs
# everything in one process.
JOBS   ?= 2
PARALLEL := $(if $(filter 0,$(JOBS)),,-n $(JOBS) --dist loadgroup --no-loadscope-reorder)

# make test lints as `make lint` does, with mypy (a minute of one core, cold) running beside the
# suite, which leaves part of a core idle while its Ray and child processes start; its report is
# printed after the suite's, and either failing fails make test
test: install
	$(BIN)/ruff check hub plugins
	@$(BIN)/mypy > $(VENV)/mypy.log 2>&1 & mypy=$$!; \
	HF_HUB_DISABLE_TELEMETRY=1 $(BIN)/python -m pytest -q -p no:cacheprovider $(PARALLEL); tests=$$?; \
	wait $$mypy; lint=$$?; echo "$(BIN)/mypy"; cat $(VENV)/mypy.log; \
	[ $$tests -eq 0 ] && [ $$lint -eq 0 ]

# everything but the tests marked slow (real full-size models, zoo parity, the wheel in a venv)
test-fast: install
	HF_HUB_DISABLE_TELEMETRY=1 $(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow" $(PARALLEL)

demo: install
	HF_HUB_DISABLE_TELEMETRY=1 $(BIN)/python examples/demo.py

bench: install
	$(BIN)/python benchmarks/run_all.py

docs: install
	$(BIN)/python docs/gen_zoo.py
	$(BIN)/python -m hub.testing.support

clean:
	rm -rf $(VENV) build dist *.egg-info
