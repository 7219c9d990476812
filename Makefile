# Two commands for a new user: `make demo` and `make test`. Both build .venv first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Blender 4.5 LTS (bpy 4.5 from PyPI) for the tests of the 4.x compositor and action APIs
VENV45 := .venv-bpy45
STAMP45 := $(VENV45)/.installed
# Blender 4.2 LTS (bpy 4.2 from PyPI), the manifest's minimum, for the same scenario
VENV42 := .venv-bpy42
STAMP42 := $(VENV42)/.installed

# Debian packages: speech synthesis (dataset generator and speech corpus: espeak-ng, flite,
# festival with two festvox voices), audio and video tools, and the libraries Blender (bpy)
# needs to render headless.
SYSTEM_PACKAGES := espeak-ng flite festival festvox-us-slt-hts festvox-kallpc16k sox ffmpeg libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri libgbm1 \
	libx11-6 libxi6 libxrender1 libxkbcommon0 libsm6 libxext6 libxfixes3

.PHONY: venv venv-bpy45 venv-bpy42 sysdeps test test-installer demo demo-subject bench extension clean-venv

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required (Blender 4.2-5.0 use it); found " + sys.version.split()[0]' \
		|| { echo "error: set PYTHON=/path/to/python3.11 (Debian: apt-get install python3.11 python3.11-venv)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

venv-bpy45: $(STAMP45)

$(STAMP45): requirements-bpy45.txt
	test -x $(VENV45)/bin/python || $(PYTHON) -m venv $(VENV45)
	$(VENV45)/bin/python -m pip install --quiet -r requirements-bpy45.txt
	touch $(STAMP45)

venv-bpy42: $(STAMP42)

$(STAMP42): requirements-bpy42.txt
	test -x $(VENV42)/bin/python || $(PYTHON) -m venv $(VENV42)
	$(VENV42)/bin/python -m pip install --quiet -r requirements-bpy42.txt
	touch $(STAMP42)

sysdeps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES); \
	else echo "error: missing system packages:$$missing. Run: sudo apt-get install -y $(SYSTEM_PACKAGES)"; exit 1; fi

test: venv venv-bpy45 venv-bpy42 sysdeps
	$(BIN)/python -m pytest -q tests

# Opt-in: Preferences > Install Backend for real (the package index, 0.5-5.4 GB), into a
# temporary Blender user folder, then one generation with that backend.
test-installer: venv
	$(BIN)/python tests/installer/run_installer.py

demo: venv sysdeps
	$(BIN)/python -m emotalk3d_addon.backend.tools.demo run --out out

# Rebuild the shipped demo subject from scratch (fixed seed): dataset + full training.
demo-subject: venv sysdeps
	$(BIN)/python -m emotalk3d_addon.backend.tools.demo build --work build/demo

# The installable extension zip (Blender's own `extension build`), into dist/
extension: venv
	$(BIN)/python -m emotalk3d_addon build --out dist

bench: venv
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean-venv:
	rm -rf $(VENV) $(VENV45)
