# The two quick-start commands, and the helpers they stand on.
# `make run`: the whole service; `make test`: the test suite (what CI runs).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SERVICES := $(PY) scripts/with_services.py --
PORT ?= 8000
export PORT
# The Procfile names celery and gunicorn: take them from the virtualenv.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# Without DJANGO_SETTINGS_MODULE, manage.py, gunicorn and celery take the production settings
# (fail closed), so every target here names its own: local (DEBUG, placeholder secret) unless
# the environment chooses; `make test` always runs with the test settings.
DJANGO_SETTINGS_MODULE ?= selfos.settings.local
export DJANGO_SETTINGS_MODULE
TEST_SETTINGS := selfos.settings.test

.PHONY: run test lint format bench chaos cluster demo migrate shell lock

# The requirements/*.txt files are hashed locks of the whole dependency tree (`make lock`
# writes them from the .in files): pip refuses any file whose hash is not in them.
$(VENV)/.installed: requirements.txt requirements/local.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes -r requirements.txt
	touch $@

# The benchmark's extras (requirements/bench.txt), on top of everything above.
$(VENV)/.bench-installed: $(VENV)/.installed requirements/bench.txt
	$(PY) -m pip install --quiet --require-hashes -r requirements/bench.txt
	touch $@

run: $(VENV)/.installed
	$(SERVICES) $(PY) scripts/run_service.py

test: $(VENV)/.installed
	DJANGO_SETTINGS_MODULE=$(TEST_SETTINGS) $(SERVICES) $(PY) -m pytest $(PYTEST_ARGS)

demo: $(VENV)/.installed
	$(PY) scripts/demo.py

bench: $(VENV)/.bench-installed
	SELFOS_DB_NAME=selfos_bench $(SERVICES) $(PY) -m bench $(BENCH_ARGS)

chaos: $(VENV)/.installed
	SELFOS_DB_NAME=selfos_chaos $(SERVICES) $(PY) -m bench.chaos $(CHAOS_ARGS)

# The service on eight hosts in network namespaces (root only), with servers of its own.
cluster: $(VENV)/.installed
	$(PY) -m bench.cluster $(CLUSTER_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

migrate: $(VENV)/.installed
	$(SERVICES) $(PY) manage.py migrate

shell: $(VENV)/.installed
	$(SERVICES) $(PY) manage.py shell

# Compile requirements/*.in into the hashed locks, development first (the others are
# constrained to its versions). Existing pins stay; to move one, edit its .in line, or pass
# LOCK_ARGS="--upgrade-package NAME".
LOCK := $(VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links $(LOCK_ARGS)
lock: $(VENV)/.installed
	$(LOCK) --output-file requirements/local.txt requirements/local.in
	$(LOCK) --output-file requirements/production.txt requirements/production.in
	$(LOCK) --output-file requirements/bench.txt requirements/bench.in
