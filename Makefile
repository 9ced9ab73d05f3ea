# leadstream — `make help` lists the targets. The README's two commands are `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
INFRA := deploy/local/infra.sh
ENV_FILE := .run/env
# The servers' addresses from `infra.sh env` (explicit KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL win).
WITH_ENV = eval "$$(bash $(INFRA) env)";
# `make test`: the whole suite on TEST_WORKERS processes (pytest-xdist; see tests/conftest.py for the grouping).
# Most of a test waits on the broker, the database or a service, so a few workers fit two cores.
# The 25 slowest tests are listed at the end: CI must finish in 20 minutes, and its log says where they go.
TEST_WORKERS ?= 3
PYTEST_ARGS ?= -n $(TEST_WORKERS) --dist loadfile --durations=25
# The git revision whose committed schemas the models must stay compatible with (CI: the merge base with the target
# branch, see .ci/run); every release in schemas/releases/ is checked as well.
SCHEMAS_BASE ?= HEAD

.PHONY: help venv lock frontend browser infra-up infra-down infra-status topics migrate demo test test-unit screenshots lint schemas schemas-check asyncapi-tools schemas-dist schemas-release docs bench helm-lint clean

help: ## list targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

# The lock files (hashes of every file of every platform, made by `make lock` with uv). `make venv` installs
# requirements/dev.txt; the Dockerfile installs requirements/runtime.txt (or analytics.txt): the same versions.
LOCKS := requirements/dev.txt requirements/runtime.txt requirements/analytics.txt
UV_COMPILE = $(BIN)/uv pip compile --universal --python-version 3.11 --generate-hashes --quiet \
	--no-emit-package leadstream --no-emit-package leadstream-schemas --custom-compile-command "make lock"

# uv installs the locked set in a few seconds where pip takes half a minute or more on two cores (CI makes a new venv
# every run); pip does it when uv cannot (e.g. an index only pip is configured for).
# --compile-bytecode: uv writes no .pyc by default, and where PYTHONDONTWRITEBYTECODE is set (CI machines) nothing
# ever does, so every process compiled what it imported: half a second of CPU at each service, CLI or replay worker
# start, hundreds of them in `make test`. Compiling the venv once takes ~13 s of CPU (pip compiles by default).
$(STAMP): pyproject.toml schemas/pyproject.toml requirements/dev.txt $(BIN)/uv
	$(BIN)/uv pip install --python $(BIN)/python -q --compile-bytecode --require-hashes --no-deps -r requirements/dev.txt \
		|| $(BIN)/pip install -q --require-hashes --no-deps -r requirements/dev.txt
	$(BIN)/uv pip install --python $(BIN)/python -q --no-deps --no-build-isolation -e ./schemas -e '.[analytics,dev]' \
		|| $(BIN)/pip install -q --no-deps --no-build-isolation -e ./schemas -e '.[analytics,dev]'
	$(BIN)/pip check
	touch $(STAMP)

venv: $(STAMP) frontend ## create .venv and install the project (from requirements/dev.txt: every version and hash locked) and the console's npm packages

# uv alone (it installs the venv above), so that `make lock` works while the venv cannot be installed (a dependency
# just added to pyproject.toml is not in the lock yet); the same version as the dev lock's.
$(BIN)/uv:
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q "uv==$$(sed -n 's/^uv==\([^ ]*\).*/\1/p' requirements/dev.txt)"

lock: $(BIN)/uv ## re-lock requirements/*.txt from pyproject.toml (uv; run after changing a dependency)
	$(UV_COMPILE) requirements/dev.in -o requirements/dev.txt
	# The image's locks take their versions from the dev lock: what the tests ran is what ships.
	$(UV_COMPILE) requirements/runtime.in -c requirements/dev.txt -o requirements/runtime.txt
	$(UV_COMPILE) requirements/analytics.in -c requirements/dev.txt -o requirements/analytics.txt

frontend: ## the console's front-end packages (npm ci from services/console/package-lock.json; node from apt if missing)
	bash deploy/local/frontend.sh deps

browser: ## Chromium for the browser tests (Debian's chromium from apt if missing)
	bash deploy/local/frontend.sh chromium

infra-up: ## start Kafka and Postgres (idempotent)
	bash $(INFRA) up

infra-down: ## stop the Kafka and Postgres this project started
	bash $(INFRA) down

infra-status: ## show the local servers
	bash $(INFRA) status

topics: venv infra-up ## create every topic and its .dlq
	$(WITH_ENV) $(BIN)/leadstream topics apply

migrate: venv infra-up ## apply every service's migrations
	$(WITH_ENV) $(BIN)/leadstream migrate

# The project's own modules compiled to .pyc (a second; only what changed after that), for the same reason as the
# venv's: an editable install is imported from the source tree, and under PYTHONDONTWRITEBYTECODE each process
# compiled it again. -q lists nothing but a file that does not compile.
BYTECODE = $(BIN)/python -m compileall -q -j 0 services schemas/src leadstream_cli tests bench examples

demo: venv infra-up ## run the demo campaign (ONCE=1 exits after printing)
	$(BYTECODE)
	$(WITH_ENV) $(BIN)/leadstream demo $(if $(ONCE),--once,)

test: venv infra-up browser ## run every test on the real broker and database (and the console in Chromium)
	$(BYTECODE)
	$(WITH_ENV) $(BIN)/pytest $(PYTEST_ARGS)

screenshots: venv infra-up browser ## the console's browser tests, writing their screenshots to .run/screenshots/ (the docs' pictures)
	$(WITH_ENV) LEADSTREAM_SCREENSHOTS=1 $(BIN)/pytest tests/e2e/console

lint: venv ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy schemas/src services leadstream_cli tests bench examples

schemas: venv ## regenerate JSON Schemas and the AsyncAPI document
	$(BIN)/python -m leadstream_schemas.generate

# The official AsyncAPI CLI (tools/asyncapi/package-lock.json). Its usage metrics are off: they would send the
# document to a third party (the config file says so; CI=true alone would not cover a developer's machine).
ASYNCAPI_CLI = SUPPRESS_NO_CONFIG_WARNING=1 ASYNCAPI_METRICS_CONFIG_PATH=$(CURDIR)/tools/asyncapi/analytics.json \
	tools/asyncapi/node_modules/.bin/asyncapi

asyncapi-tools: ## the official AsyncAPI CLI and HTML template (npm ci from tools/asyncapi/package-lock.json)
	bash deploy/local/frontend.sh asyncapi

schemas-check: venv asyncapi-tools ## fail if generated schemas are stale, a change breaks any release or the target, or the AsyncAPI parser refuses the document
	$(BIN)/python -m leadstream_schemas.generate --check
	$(BIN)/python -m leadstream_schemas.releases check
	$(BIN)/python -m leadstream_schemas.compat --releases
	$(BIN)/python -m leadstream_schemas.compat --ref $(SCHEMAS_BASE)
	$(ASYNCAPI_CLI) validate schemas/asyncapi.yaml --fail-severity=error

schemas-dist: venv ## build leadstream-schemas' wheel and sdist into dist/ (the version of schemas/pyproject.toml)
	$(BIN)/uv build --no-build-isolation --python $(BIN)/python schemas --out-dir dist

schemas-release: venv ## release the version in schemas/pyproject.toml: freeze its schemas in schemas/releases/, date its CHANGELOG entry
	$(BIN)/python -m leadstream_schemas.releases snapshot

docs: asyncapi-tools ## render the event contract as HTML (every channel and message, with examples) into docs/contract/
	$(ASYNCAPI_CLI) generate fromTemplate schemas/asyncapi.yaml ./tools/asyncapi/node_modules/@asyncapi/html-template \
		-o docs/contract --force-write --no-interactive
	@echo "open docs/contract/index.html"

bench: venv infra-up ## benchmarks: projection replay (one machine and pod mode), live path and export (ratios against baselines measured in the same run)
	$(WITH_ENV) $(BIN)/python bench/projection.py
	$(WITH_ENV) $(BIN)/python bench/replay_pods.py
	$(WITH_ENV) $(BIN)/python bench/live.py
	$(WITH_ENV) $(BIN)/python bench/export.py
	$(BIN)/python bench/summary.py

helm-lint: ## lint, render, kubeconform-check the chart and promtool-check its alert rules (builds the tools with Go once)
	bash deploy/helm/check.sh

image: ## build the leadstream image (needs a Docker engine)
	docker build -t leadstream:local .

clean: ## remove the venv and caches (servers' data stays in .run/)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache services/console/node_modules tools/asyncapi/node_modules docs/contract dist
