# The README's commands. Everything runs offline once the packages are installed.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch/torchvision versions that this project's CI machines carry locally
TORCH  ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install test test-fast demo bench docs clean

$(BIN)/.installed: pyproject.toml examples/hub-plugin-example/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[all,test]'
	$(BIN)/pip install -q --no-build-isolation -e examples/hub-plugin-example
	touch $@

install: $(BIN)/.installed

# ruff and mypy come with the test extra; their settings are in pyproject.toml
.PHONY: lint
lint: install
	$(BIN)/ruff check hub plugins
	$(BIN)/mypy

# one pytest process per test file: a single process running the whole suite crashed with SIGSEGV
# inside libpython deep into the run (torch.export / DDP after hundreds of tests with OpenVINO,
# open_clip, Ray and Playwright loaded), never a file on its own; exit 5 = nothing selected
test: install lint
	@fail=""; for f in tests/test_*.py; do \
	  HF_HUB_DISABLE_TELEMETRY=1 $(BIN)/python -m pytest -q -p no:cacheprovider "$$f"; rc=$$?; \
	  if [ $$rc -ne 0 ] && [ $$rc -ne 5 ]; then fail="$$fail $$f(exit $$rc)"; fi; \
	done; \
	if [ -n "$$fail" ]; then echo "FAILED:$$fail"; exit 1; fi; echo "all test files passed"

# everything but the tests marked slow (real full-size models, zoo parity, the wheel in a venv)
test-fast: install
	HF_HUB_DISABLE_TELEMETRY=1 $(BIN)/python -m pytest -q -m "not slow"

demo: install
	HF_HUB_DISABLE_TELEMETRY=1 $(BIN)/python examples/demo.py

bench: install
	$(BIN)/python benchmarks/run_all.py

docs: install
	$(BIN)/python docs/gen_zoo.py

clean:
	rm -rf $(VENV) build dist *.egg-info
