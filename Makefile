# moat: build, install, test, benchmark. Everything runs as root on Debian 12.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
export CGO_ENABLED := 1

GO      ?= go
VERSION ?= 0.1.0
COMMIT  := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X main.version=$(VERSION) -X main.gitCommit=$(COMMIT)
# urfave_cli_no_docs leaves out the CLI's man-page generator, whose package
# init costs every moat process (the container's init too) a millisecond.
TAGS    := seccomp,urfave_cli_no_docs
# The integration tests in test/ build only with this tag added.
ITAGS   := $(TAGS),integration
BIN     := bin/moat

.PHONY: build install deps demo test unit integration bench vet fmt clean

build: deps
	$(GO) build -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/moat

install: build
	install -m 0755 $(BIN) /usr/local/bin/moat

# Build-time packages only (cgo, libseccomp).
deps:
	@scripts/deps.sh build

# Builds moat, makes a busybox bundle and runs it: prints the uid_map.
demo: install
	@scripts/demo.sh

# With the integration tag, so that test/ is vetted too.
vet:
	$(GO) vet -tags '$(ITAGS)' ./...

unit: build
	$(GO) test -tags '$(TAGS)' -count=1 $$($(GO) list ./... | grep -v /test$$)

# Integration tests drive the installed binary through dockerd and containerd;
# scripts/testenv.sh starts what is not running and stops only what it started.
integration: install
	@scripts/deps.sh test
	scripts/testenv.sh $(GO) test -tags '$(ITAGS)' -count=1 -timeout 40m -v ./test/

test: vet unit integration

bench: install
	@scripts/deps.sh test
	scripts/testenv.sh scripts/bench.sh

clean:
	rm -rf bin
