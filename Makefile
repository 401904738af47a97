# Two commands: `make demo` and `make test`. Both set everything up from a fresh clone.
PY_BOOT ?= python3
UV_VERSION := 0.13.8
UV := .tools/bin/uv
VENV := .venv
DEMO_DIR ?= demo
export BENTOML_DO_NOT_TRACK := true
export UV_PROJECT_ENVIRONMENT := $(VENV)
# Compile the environment's bytecode at install: where PYTHONDONTWRITEBYTECODE is set (it is on these
# machines) every `tierwise` subprocess would otherwise recompile mlflow and bentoml on import (~2.5x the CPU).
export UV_COMPILE_BYTECODE := 1

.PHONY: demo test lint bench clean system-packages

# What the tests drive besides Python: Debian's chromium (console browser tests), a JDK (Spark),
# PostgreSQL (team MLflow and the console database). Installed when missing, never skipped.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
system-packages:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v java >/dev/null 2>&1 || missing="$$missing default-jre-headless"; \
	ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

$(UV):
	$(PY_BOOT) -m venv .tools
	.tools/bin/python -m pip install -q uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --all-extras --python $(PY_BOOT)
	touch $@

demo: $(VENV)/.synced
	$(VENV)/bin/tierwise demo --out $(DEMO_DIR)

test: $(VENV)/.synced system-packages
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest -q -n auto --dist loadfile

lint: $(VENV)/.synced
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) .tools $(DEMO_DIR)
