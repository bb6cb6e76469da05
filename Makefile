# Daily operations (refresh.md §10.1), all through the driver. DRIVER can point at another install.
DRIVER ?= .venv/bin/driver
ARGS ?=

.PHONY: bars emas daily-refresh validate dry-run clean-logs freshness test quickstart help

help:
	@echo "make bars | emas | daily-refresh | validate | dry-run | clean-logs | freshness | test | quickstart"

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
