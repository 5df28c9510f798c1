# hull — build and test entry points. `make test` is what CI runs.
GO ?= go
CC ?= gcc
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
# hull and hull-runc link statically (the nsenter constructor is C, so cgo
# stays on): every container start executes the binary twice, and a
# dynamic one pays the loader and libc set-up each time, about 2 ms of a
# 10 ms `hull-runc run`. netgo and osusergo keep the name service in Go.
STATIC := -tags netgo,osusergo -ldflags '$(LDFLAGS) -linkmode external -extldflags -static'

.PHONY: all deps build demo test lint oci-validation bench clean

all: build

deps:
	@scripts/deps.sh
	@scripts/cgroup-setup.sh

build: deps
	@mkdir -p bin
	$(GO) build -trimpath $(STATIC) -o bin/hull-runc ./cmd/hull-runc
	$(GO) build -trimpath $(STATIC) -o bin/hull ./cmd/hull
	$(CC) -static -O2 -Wall -Wextra -o bin/hull-init cmd/hull-init/init.c
	$(CC) -static -O2 -Wall -Wextra -o bin/hull-monitor cmd/hull-monitor/*.c

# The main job: a busybox container through hull-runc, no internet needed.
demo: build
	scripts/demo.sh

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt: files above need formatting'; exit 1; }
	$(GO) vet ./...

# The whole suite: unit tests and root integration tests (real namespaces,
# cgroups and mounts), then the OCI conformance run.
test: build lint
	$(GO) test -race -count=1 -timeout 20m ./...
	$(MAKE) oci-validation

oci-validation: build
	cd test/oci-validation && ./run.sh

bench: build
	scripts/deps.sh --bench
	bench/runtime.sh
	bench/images.sh
	bench/engine.sh

clean:
	rm -rf bin test/oci-validation/work
