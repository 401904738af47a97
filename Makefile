# Two commands: `make demo` and `make test`. Both set everything up from a fresh clone.
PY_BOOT ?= python3
UV_VERSION := 0.13.8
UV := .tools/bin/uv
VENV := .venv
DEMO_DIR ?= demo
export BENTOML_DO_NOT_TRACK := true
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: demo test lint bench clean

$(UV):
	$(PY_BOOT) -m venv .tools
	.tools/bin/python -m pip install -q uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --python $(PY_BOOT)
	touch $@

demo: $(VENV)/.synced
	$(VENV)/bin/tierwise demo --out $(DEMO_DIR)

test: $(VENV)/.synced
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest -q -n auto --dist loadfile

lint: $(VENV)/.synced
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) .tools $(DEMO_DIR)
