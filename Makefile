# Guardian's make targets. `make demo` and `make test` are the two commands
# a newcomer needs (see README.md).

GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: all build demo test deps lint bench clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/guardian ./cmd/guardian
	$(GO) build -o bin/demo-service ./cmd/demo-service

# Builds bin/guardian with progress lines (the first build takes minutes),
# then runs `bin/guardian demo $(DEMO_ARGS)`.
demo:
	GO="$(GO)" LDFLAGS="$(LDFLAGS)" scripts/demo.sh $(DEMO_ARGS)

test:
	scripts/test.sh

deps:
	scripts/deps.sh

lint: deps
	gofmt -l . | grep . && exit 1 || true
	$(GO) vet ./...
	.cache/bin/staticcheck ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./trigger ./source/embedded

clean:
	rm -rf bin
