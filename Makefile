# espf: `make run` runs the service, `make test` runs every test. Both install first.
SHELL := /bin/bash
DEPS := node_modules/.espf-installed
DIST := dist/.built

.PHONY: run build test typecheck unit bench deps clean

$(DEPS): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $(DEPS)

deps: $(DEPS)

# The compiled JavaScript bin/espf.js runs (rebuilt when a source changes).
$(DIST): $(DEPS) tsconfig.json tsconfig.build.json $(shell find src -type f)
	npm run --silent build
	@touch $(DIST)

build: $(DIST)

run: $(DIST)
	./bin/espf.js run $(if $(INSTANCE),--instance $(INSTANCE),)

typecheck: $(DEPS)
	npx tsc --noEmit -p .

test: $(DEPS) typecheck
	npx mocha 'test/**/*.test.ts'

# The pure unit tests alone (no database, a second or two).
unit: $(DEPS)
	npx mocha --no-config --node-option import=tsx 'test/unit/**/*.test.ts'

bench: $(DIST)
	node --import tsx bench/run.ts

clean:
	rm -rf node_modules dist .espf log
