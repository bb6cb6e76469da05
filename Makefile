# Daily operations (refresh.md §10.1), all through the driver. DRIVER can point at another install.
DRIVER ?= .venv/bin/driver
ARGS ?=

.PHONY: bars emas daily-refresh validate dry-run clean-logs freshness test quickstart help nightly gaps

help:
	@echo "make bars | emas | daily-refresh | validate | dry-run | clean-logs | freshness | test | quickstart | nightly | gaps"

bars:
	$(DRIVER) refresh --bars $(ARGS)

emas:
	$(DRIVER) refresh --emas $(ARGS)

daily-refresh:
	$(DRIVER) refresh --all --quiet $(ARGS)

validate:
	$(DRIVER) validate $(ARGS)

dry-run:
	$(DRIVER) refresh --all --dry-run $(ARGS)

freshness:
	$(DRIVER) freshness $(ARGS)

clean-logs:
	find .logs -maxdepth 1 -name 'refresh-*.log' -mtime +30 -print -delete 2>/dev/null || true

test:
	./dev.sh test

quickstart:
	./dev.sh quickstart

# Issue 21: fetch what is missing (source_gaps), then refresh; the API keys come from the environment.
FETCH_ARGS ?=
nightly:
	$(DRIVER) fetch --gaps --quiet $(FETCH_ARGS) && $(DRIVER) refresh --all --quiet $(ARGS)

gaps:
	$(DRIVER) gaps $(ARGS)
