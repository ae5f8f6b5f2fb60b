# One command runs mailgate (`go run ./cmd/mailgate dev`); one command tests it: `make test`.

GO ?= go

.PHONY: test deps vet fmt-check build bench fuzz

## test: install what the tests need, then vet and run every test with the race detector
test: deps fmt-check vet
	$(GO) test -race -count=1 ./...

## deps: install the real programs the tests run (redis-server, postfix, swaks, promtool, alertmanager, ...)
deps:
	@./test/ensure-deps.sh

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/mailgate ./cmd/mailgate

## bench: delivery and API benchmarks (figures, not pass/fail)
bench: deps
	$(GO) test -run '^$$' -bench . -benchmem ./...

## fuzz: run each fuzz target for a while (FUZZTIME=30s)
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParseRaw -fuzztime $(FUZZTIME) ./internal/compose
	$(GO) test -run '^$$' -fuzz FuzzParseAddress -fuzztime $(FUZZTIME) ./internal/compose
	$(GO) test -run '^$$' -fuzz FuzzBuild -fuzztime $(FUZZTIME) ./internal/compose
	$(GO) test -run '^$$' -fuzz FuzzParseJSONToMIME -fuzztime $(FUZZTIME) ./api
	$(GO) test -run '^$$' -fuzz FuzzFastSubmissionMatchesEncodingJSON -fuzztime $(FUZZTIME) ./api
	$(GO) test -run '^$$' -fuzz FuzzAppendQPMatchesWriter -fuzztime $(FUZZTIME) ./internal/compose
	$(GO) test -run '^$$' -fuzz FuzzPlainMailboxMatchesNetMail -fuzztime $(FUZZTIME) ./internal/addrpolicy
	$(GO) test -run '^$$' -fuzz FuzzSqueezeSpace -fuzztime $(FUZZTIME) ./internal/addrpolicy
