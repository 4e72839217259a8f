# Two commands matter: `make run` and `make test`. Both set up everything they need.
PY        ?= python3
VENV      := .venv
BIN       := $(VENV)/bin
STAMP     := $(VENV)/.installed
SYSSTAMP  := .sysdeps.stamp
JSDIR     := tests/conformance/js
JSSTAMP   := $(JSDIR)/.installed
# The documented operator variables decide (GATEWAY_PORT=18080 make run); HOST/PORT given
# on make's command line (make run PORT=9000) still work. HOST/PORT from the environment
# are ignored: shells and platforms set them for other purposes (zsh's HOST is the machine).
GATEWAY_HOST ?= 127.0.0.1
GATEWAY_PORT ?= 8080
HOST      := $(if $(filter command line,$(origin HOST)),$(HOST),$(GATEWAY_HOST))
PORT      := $(if $(filter command line,$(origin PORT)),$(PORT),$(GATEWAY_PORT))

.DEFAULT_GOAL := help
.PHONY: help install sysdeps conformance-js run test test-aiortc soak test-fast lint typecheck fuzz bench bench-quick bench-pipecat-venv bench-pipecat clean

help: ## show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP) ## create .venv and install pinned Python packages

# OpenAI's browser SDK for the conformance tests: installed from the lock file, bundled once.
$(JSSTAMP): $(JSDIR)/package.json $(JSDIR)/package-lock.json $(JSDIR)/agents_page.js
	@command -v npm >/dev/null || { echo "npm is required for the conformance tests (apt-get install -y npm)"; exit 1; }
	cd $(JSDIR) && npm ci --no-audit --no-fund && npm run bundle
	touch $(JSSTAMP)

conformance-js: $(JSSTAMP) ## npm ci + esbuild bundle of the browser SDK the conformance tests drive

sysdeps: ## install Debian packages the tests drive (chromium, espeak-ng, sox, prometheus)
	@scripts/sysdeps.sh

run: install ## start the gateway on http://$(HOST):$(PORT) with the demo (local engine when no OPENAI_API_KEY)
	GATEWAY_HOST=$(HOST) GATEWAY_PORT=$(PORT) GATEWAY_DEMO_ENABLED=$${GATEWAY_DEMO_ENABLED:-true} \
	  $(BIN)/python -m gateway serve --with-local-engine-if-no-key

test: install sysdeps $(JSSTAMP) ## run the whole test suite (what CI runs)
	$(BIN)/python -m pytest -q -p no:cacheprovider

soak: install sysdeps ## the 10-minute Chromium soak of the owned media datapath
	OWNED_SOAK_S=$${OWNED_SOAK_S:-600} $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_browser_owned.py -k soak

test-aiortc: install sysdeps $(JSSTAMP) ## the whole suite on the fallback datapath (media.datapath = "aiortc")
	GATEWAY_MEDIA_DATAPATH=aiortc $(BIN)/python -m pytest -q -p no:cacheprovider

test-fast: install ## tests without slow soak and browser tests
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow and not browser"

fuzz: install ## long fuzzing: schemathesis over /openapi.json, then >= 100,000 inputs a harness under atheris with coverage (bench/results/fuzz.json)
	FUZZ_API_EXAMPLES=$${FUZZ_API_EXAMPLES:-500} $(BIN)/python -m pytest -q -p no:cacheprovider tests/fuzz/test_api_schemathesis.py
	nice -n 10 $(BIN)/python -m tests.fuzz all --runs $${FUZZ_RUNS:-100000}

lint: install ## ruff
	$(BIN)/ruff check gateway tests bench

typecheck: install ## mypy --strict
	$(BIN)/mypy

bench: install sysdeps ## every benchmark; results in bench/results/*.json (see BENCHMARKS.md)
	$(BIN)/python -m bench.calls --calls 1,5,10,20,30,40,45 --seconds 20
	$(BIN)/python -m bench.jitter
	$(BIN)/python -m bench.latency
	$(BIN)/python -m bench.latency --overload 60
	$(BIN)/python -m bench.encoding
	$(BIN)/python -m bench.bargein --trials 20
	$(BIN)/python -m bench.localrt_latency
	$(BIN)/python -m bench.recording_cost
	$(BIN)/python -m bench.metrics_cost
	$(BIN)/python -m bench.toolround
	$(BIN)/python -m bench.resume
	$(BIN)/python -m bench.listeners

bench-quick: install ## regression guard: cost per call vs the naive relay, in one run
	$(BIN)/python -m bench.calls --quick

# Pipecat (the system a user would pick instead) in its own venv: its pins are not ours.
PIPECAT_VENV := .venv-pipecat
$(PIPECAT_VENV)/.installed: bench/requirements-pipecat.txt
	$(PY) -m venv $(PIPECAT_VENV)
	$(PIPECAT_VENV)/bin/pip install -q -r bench/requirements-pipecat.txt
	touch $@

bench-pipecat-venv: $(PIPECAT_VENV)/.installed ## .venv-pipecat: Pipecat pinned for bench.calls --servers ...,pipecat

bench-pipecat: install bench-pipecat-venv ## gateway, naive relay and Pipecat per call in one run (BENCHMARKS.md)
	$(BIN)/python -m bench.calls --calls 5,10,15,20,45 --seconds 10 --repeat 2 --servers gateway,naive,pipecat --skip-above pipecat=20 --out bench/results/calls-pipecat.json

clean: ## remove the venv
	rm -rf $(VENV) $(PIPECAT_VENV) $(SYSSTAMP) $(JSDIR)/node_modules $(JSDIR)/dist $(JSSTAMP)
