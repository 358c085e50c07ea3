# The two entry points for a fresh machine are `make demo` and `make test`; each sets up what it needs
# (Debian packages when missing, .venv, the colcon workspace) and is idempotent.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: help setup build lint test demo bench clean

help:
	@echo "make demo   - set up, then run the main job (DEMO_ARGS=\"--objective energy --time-s 300\")"
	@echo "make test   - set up, then lint and run the whole test suite (loopback-only network namespace)"
	@echo "make bench  - run every benchmark and write bench/RESULTS.md"
	@echo "make clean  - remove build/, install/ and log/ (keeps .venv)"

setup:
	@tools/setup_env.sh

build: setup
	@tools/build_ws.sh

lint: setup
	@tools/lint.sh

test: build lint
	@tools/run_tests.sh $(PYTEST_ARGS)

demo: build
	@tools/isolated.sh python -m mm_bringup.demo $(DEMO_ARGS)

bench: build
	@tools/isolated.sh python bench/run_all.py

clean:
	rm -rf build install log
