# Two entry points: `make demo` (the main job) and `make test` (the test suite).
# Each creates .venv on first use and installs what it needs.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
# The exact torch build that lies on this machine's disk (CPU/CUDA wheel from the local index).
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: demo explain test test-fast lint install clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e '.[test]'
	# LXT 2.1 (AttnLRP oracle of tests/lrp/test_huggingface.py) without its heavy declared dependencies
	$(PY) -m pip install -q --no-deps lxt==2.1
	touch $@

install: $(VENV)/.installed

# The Clever-Hans demo: trains on digits with a watermark shortcut, finds it, writes runs/clever_hans.
# DEMO_ARGS=--fast runs the reduced version (CI does).
demo: $(VENV)/.installed
	$(PY) examples/clever_hans_digits.py --out runs/clever_hans $(DEMO_ARGS)

# One model explained: a montage of inputs, LRP heatmaps and overlays in out/heatmap.png.
explain: $(VENV)/.installed
	$(PY) examples/explain_image.py --out out/heatmap.png

lint: $(VENV)/.installed
	$(PY) -m ruff check .

# Everything, the slow, browser, DDP and GPU tests included (GPU tests skip without CUDA).
test: $(VENV)/.installed lint
	$(PY) -m pytest -q -n 2 tests

# The quick loop while editing: leaves out the tests marked slow, browser, ddp and gpu (pyproject's markers).
test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -n 2 -m "not slow and not browser and not ddp and not gpu" tests

clean:
	rm -rf $(VENV) out runs/clever_hans
