# Fresh machine -> working project. Everything installs from the package registries; nothing
# is downloaded at run time. Python 3.10+ with venv is all that must be there already.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
# The CPU/CUDA wheels pip finds for this torch pin; see README "Installing".
TORCH  ?= torch==2.14.1 torchvision==0.29.1

.PHONY: setup demo test test-fast bench bench-peers bench-advise bench-augment bench-explain bench-engine bench-segment bench-detect data browser clean

$(VENV)/.installed: pyproject.toml
	@PYTHON=$(PYTHON) scripts/need.sh venv
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e '.[test,deploy]'
	touch $@

setup: $(VENV)/.installed

# System packages come from Debian's apt (as root, or through sudo): scripts/need.sh installs
# what is missing, checks it is there afterwards, and prints a banner when it cannot. Without
# them the demo falls back to digits and the report's browser test is skipped; CI sets
# HEADSTART_REQUIRE_DATA=1 and HEADSTART_REQUIRE_BROWSER=1 so that it stops here instead.
data:
	@scripts/need.sh data

# Headless Chromium renders the HTML report in its test.
browser:
	@scripts/need.sh browser

demo: setup data
	HF_HUB_OFFLINE=1 $(VENV)/bin/headstart demo

test: setup data browser
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

test-fast: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not slow"

# Accuracy per label on Fashion-MNIST (1/10/100 labels per class): ~40 min on 2 idle cores.
bench: setup data
	HF_HUB_OFFLINE=1 $(PY) -m benchmarks.run labels

# headstart's best vs fastai vs a plain loop, same budget (fastai from the bench extra).
bench-peers: setup data
	$(PIP) install -q -e '.[bench]'
	HF_HUB_OFFLINE=1 $(PY) -m benchmarks.run peers

# --strategy auto beside every fixed strategy (~80 min on 2 cores); the icons case needs the
# icon themes (see benchmarks/folders.py), installed here when apt is available.
bench-augment: setup data
	HF_HUB_OFFLINE=1 $(PY) -m benchmarks.augment

# Report, CAM-box IoU on placed objects, bias audit on a planted shortcut: ~20 min on 2 cores.
bench-explain: setup data browser
	HF_HUB_OFFLINE=1 $(PY) -m benchmarks.explain

bench-advise: setup data
	@scripts/need.sh icons
	HF_HUB_OFFLINE=1 $(PY) -m benchmarks.run advise

# The engine's claims (cache, loop overhead, fastai, 10k vs 60k): ~20 min on 2 idle cores.
bench-engine: setup data
	$(PIP) install -q -e '.[bench]'
	HF_HUB_OFFLINE=1 $(PY) benchmarks/engine.py all

# Segmentation: bilinear vs transposed, 50 vs 500 images, frozen encoder, Grad-CAM vs masks, icons (~50 min on 2 cores).
bench-segment: setup data
	@scripts/need.sh icons
	HF_HUB_OFFLINE=1 $(PY) benchmarks/segment.py

# Faster R-CNN vs FCOS at 50 and 500 boxed images beside a classifier's CAM boxes: ~25 min on 2 cores.
bench-detect: setup data
	HF_HUB_OFFLINE=1 $(PY) benchmarks/detect.py

clean:
	rm -rf $(VENV) runs .pytest_cache
