# SPDX-License-Identifier: MIT
# Thin wrapper over CMake.  Every target installs missing Debian packages
# first (scripts/deps.sh is quick when nothing is missing).
BUILD     ?= build
ASAN      ?= build-asan
FUZZB     ?= build-fuzz
JOBS      ?= $(shell nproc)
CMAKE_ARGS ?=

.PHONY: all deps build test unit integration run bench fuzz soak asan-test format format-check check-banned clean

all: build

deps:
	@scripts/deps.sh build

build:
	@scripts/deps.sh build test
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

# The whole suite: unit and integration tests, SQLite and PostgreSQL (a
# throwaway cluster started by scripts/pg-test.sh and removed afterwards).
test: build
	@scripts/deps.sh build test pg
	cd $(BUILD) && DLRD_PG_FAST=1 $(CURDIR)/scripts/pg-test.sh run ctest --output-on-failure -j $(JOBS)

unit: build
	cd $(BUILD) && ctest --output-on-failure -L unit

integration: build
	cd $(BUILD) && ctest --output-on-failure -L '^integration$$'

run: build
	@mkdir -p var
	$(BUILD)/dlrd serve $(if $(wildcard dlrd.conf),--config dlrd.conf,)

bench: build
	@scripts/deps.sh build bench pg
	bench/run.sh $(BUILD)
	bench/run_pg.sh $(BUILD)

# The suite under AddressSanitizer + UndefinedBehaviorSanitizer, leaks on.
asan-test:
	@scripts/deps.sh build test pg
	cmake -S . -B $(ASAN) -DCMAKE_BUILD_TYPE=Debug -DDLRD_SANITIZE=ON -DDLRD_WERROR=ON $(CMAKE_ARGS)
	cmake --build $(ASAN) -j $(JOBS)
	cd $(ASAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		DLRD_PG_FAST=1 $(CURDIR)/scripts/pg-test.sh run ctest --output-on-failure -j $(JOBS)

FUZZ_SECONDS ?= 300
fuzz:
	@scripts/deps.sh build fuzz
	CC=clang cmake -S . -B $(FUZZB) -DCMAKE_BUILD_TYPE=Debug -DDLRD_FUZZ=ON
	cmake --build $(FUZZB) -j $(JOBS)
	fuzz/run.sh $(FUZZB) $(FUZZ_SECONDS)

soak: build
	@scripts/deps.sh build bench
	bench/soak.sh $(BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

check-banned:
	@scripts/check-banned.sh

clean:
	rm -rf $(BUILD) $(ASAN) $(FUZZB)
