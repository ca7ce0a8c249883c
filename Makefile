# The two commands first: `make run` and `make test`. Everything installs itself on first use.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NPM_STAMP := node_modules/.installed
SLITHER_VERSION := 0.11.6
SLITHER_VENV := var/slither-venv
SLITHER_STAMP := $(SLITHER_VENV)/.installed-$(SLITHER_VERSION)

.PHONY: run test test-rabbitmq browser demo gas bench bench-accuracy bench-latency bench-listener bench-publish bench-load bench-load-sse soak install models lint alerts slither format contracts clean

run: install models
	$(PY) manage.py run_stack

test: install models browser
	$(PY) -m tests.with_broker $(PY) -m pytest

# The tests marked `rabbitmq` (the end-to-end test, the broker fault tests (retries, dead letters,
# a restart), redrive, metrics, /readyz and a 16-mint soak that SIGKILLs a worker and restarts the broker) again with every queue on
# RabbitMQ, in a vhost of the run's own (tests/with_broker.py). CI runs it after `test`.
RABBITMQ_TEST_URL ?= amqp://guest:guest@127.0.0.1:5672/
test-rabbitmq: install models
	BROKER_URL=$(RABBITMQ_TEST_URL) $(PY) -m tests.with_broker $(PY) -m pytest -m rabbitmq

demo: install
	$(PY) manage.py demo_mint

# Gas per token of the contract against a naive OpenZeppelin baseline, side by side on anvil.
gas: install
	$(PY) -m devtools.gas_benchmark --write docs/benchmarks.md

# Render+verify throughput on the reference models: bare loop vs a real worker through the queue.
bench: install models
	DRAMATIQ_NAMESPACE=mint-bench $(PY) -m tests.with_broker $(PY) manage.py bench_render --write docs/benchmarks.md

# The CLIP gate measured on the trained reference world (models/reference-world), the pixel
# oracle as judge: trait accuracy gate on/off, confusion per check on honest and wrong images,
# attempts, NEEDS_REVIEW share and the gate's cost (docs/accuracy.md). BENCH_ACCURACY_TOKENS=60
# for a quick run.
bench-accuracy: install
	$(PY) manage.py bench_accuracy --tokens $(or $(BENCH_ACCURACY_TOKENS),300) --write docs/accuracy.md

# The latency levers side by side on the reference world (docs/latency.md): teacher float32 at
# 20 and 4 steps, the distilled student at 4/2/1, int8, ONNX Runtime, ONNX + student; speed,
# tokens/hour through a real worker, oracle accuracy, gate acceptance (docs/benchmarks.md).
bench-latency: install models
	DRAMATIQ_NAMESPACE=mint-bench $(PY) -m tests.with_broker $(PY) manage.py bench_latency --write docs/benchmarks.md

# Listener catch-up on 10,000 mints; uses DATABASE_URL / REDIS_URL when set (PostgreSQL is the
# target), else SQLite and the embedded broker started by `make run`.
bench-listener: install
	DRAMATIQ_NAMESPACE=mint-bench $(PY) -m tests.with_broker $(PY) manage.py bench_listener --write docs/benchmarks.md

# 500 pinned tokens to FINAL on anvil through the real sender, batched and one per transaction.
bench-publish: install
	$(PY) manage.py bench_publish --write docs/benchmarks.md

# The token status endpoint under 200 locust collectors polling like the mint page, with the
# web tier under gunicorn, pipeline idle then running (real render + io workers) side by side;
# uses DATABASE_URL / REDIS_URL when set (PostgreSQL is the target). BENCH_LOAD_CLIENT=wrk
# measures with wrk instead (Debian: apt-get install wrk).
BENCH_LOAD_CLIENT ?= locust
bench-load: install models
	DRAMATIQ_NAMESPACE=mint-bench $(PY) -m tests.with_broker $(PY) manage.py bench_load --client $(BENCH_LOAD_CLIENT) --write docs/benchmarks.md
	$(MAKE) bench-load-sse

# bench-load's SSE step alone: how many concurrent streams the web tier holds while the status
# endpoint keeps its 50 ms p95, gunicorn at the production config's 16 threads a worker.
bench-load-sse: install
	DRAMATIQ_NAMESPACE=mint-bench $(PY) -m tests.with_broker $(PY) manage.py bench_load --sse-only --threads 16 --sse-max 40 --write docs/benchmarks.md

# 1,000 mints through the whole pipeline, a render worker SIGKILLed and the broker restarted
# partway (docs/faults.md); prints minted, published, lost, and fails when lost > 0.
# SOAK_MINTS=40 for less; BROKER_URL=amqp://... soaks on a RabbitMQ node of its own.
soak: install models
	$(PY) manage.py soak --mints $(or $(SOAK_MINTS),1000)

# The mint page's wallet library, served as a static file (git-ignored; no CDN).
ETHERS_JS := mintsite/static/mintsite/vendor/ethers.umd.min.js

install: $(STAMP) $(NPM_STAMP) $(ETHERS_JS)

# Only the browser tests need a browser (`make run` does not): they drive Debian's chromium
# (Playwright never downloads one).
browser:
	@command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium) \
		|| { echo "chromium is missing and could not be installed: run 'apt-get install -y chromium' as root" >&2; exit 1; }

$(ETHERS_JS): $(NPM_STAMP)
	mkdir -p $(@D)
	cp node_modules/ethers/dist/ethers.umd.min.js $@

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[server,render,dev]'
	touch $(STAMP)

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(NPM_STAMP)

models: install
	$(PY) manage.py build_reference_models

contracts: $(NPM_STAMP)
	node contracts/compile.js

lint: install alerts $(SLITHER_STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy
	$(PY) -m devtools.slither_check --venv $(SLITHER_VENV)

# The Prometheus alerting rules (docs/alerts.yml): promtool checks them, then runs each rule's
# unit test (tests/alerts_test.yml). promtool comes with Debian's prometheus package, installed
# without its recommends; no Prometheus server is started.
alerts:
	@command -v promtool >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus) \
		|| { echo "promtool is missing and could not be installed: run 'apt-get install -y prometheus' as root" >&2; exit 1; }
	promtool check rules docs/alerts.yml
	promtool test rules tests/alerts_test.yml

# Slither and slither-check-erc over contracts/ against contracts/slither-triage.json (a new
# finding fails); in a venv of its own, its pinned dependencies apart from the project's.
slither: install $(SLITHER_STAMP)
	$(PY) -m devtools.slither_check --venv $(SLITHER_VENV)

$(SLITHER_STAMP):
	test -x $(SLITHER_VENV)/bin/python || python3 -m venv $(SLITHER_VENV)
	$(SLITHER_VENV)/bin/pip install --quiet 'slither-analyzer==$(SLITHER_VERSION)'
	touch $(SLITHER_STAMP)

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf var/run var/renders var/ipfs var/db.sqlite3
