# carewatch: the two quick-start commands are `make run` and `make test`.
# Everything else here is what those two are made of.

BUILD        ?= build
TSAN_BUILD   ?= build-tsan
FUZZ_BUILD   ?= build-fuzz
ASAN_BUILD   ?= build-asan
JOBS         ?= $(shell nproc 2>/dev/null || echo 2)
FUZZ_SECONDS ?= 20
SOAK_EVENTS  ?= 3000000
SOAK_ROUNDS  ?= 6
HOSTILE_SECONDS ?= 90
CMAKE_FLAGS  ?=

.PHONY: all deps test-deps build test unit-test tsan-test asan-test fuzz-smoke run bench soak clean format

all: build

deps:
	@bash scripts/install-deps.sh

# Headless Chromium for the report's rendering test (not needed to run).
test-deps:
	@bash scripts/install-deps.sh --test

$(BUILD)/build.ninja: | deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

# The whole suite: unit, rule-pack and CLI tests; the many-threads test under
# ThreadSanitizer; every fuzz target for a bounded time under ASan and UBSan.
test: unit-test tsan-test fuzz-smoke
	@echo "make test: all suites passed"

unit-test: build test-deps
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# carewatch_tsan_tests holds the files of these suites alone (TSAN_TESTS in
# tests/CMakeLists.txt); the grep stops the run if another file holds one.
# The Matcher suite is not among them: the Matcher starts no threads, and
# its use from many threads at once is EvaluatorThreads'; its tests took 46
# s under TSan, one thread each, where TSan has nothing to find.
TSAN_SUITES := EvaluatorThreads|LedgerTest|DutyEngine[A-Za-z]*|SignalEngine[A-Za-z]*|ReplicaQueue
tsan-test: deps test-deps
	@listed=$$(sed -n '/^set(TSAN_TESTS/,/)/s|^ *\([a-z_/]*\.cc\).*|tests/\1|p' tests/CMakeLists.txt); \
	  for f in $$(grep -lE '^(TEST|TEST_F|TEST_P)\(($(TSAN_SUITES)),' tests/*/*.cc); do \
	    echo "$$listed" | grep -qxF "$$f" || \
	      { echo "tsan-test: $$f holds a suite run here: add it to TSAN_TESTS in tests/CMakeLists.txt"; exit 1; }; \
	  done
	cmake -S . -B $(TSAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCAREWATCH_SANITIZE=thread $(CMAKE_FLAGS)
	cmake --build $(TSAN_BUILD) -j $(JOBS) --target carewatch_tsan_tests
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
	  $(TSAN_BUILD)/tests/carewatch_tsan_tests --gtest_filter='EvaluatorThreads.*:LedgerTest.*:DutyEngine*:SignalEngine*'
	# and the ledger's writer, readers and failures on PostgreSQL (a throwaway server)
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" tests/with_pg.sh \
	  $(TSAN_BUILD)/tests/carewatch_tsan_tests --gtest_filter='LedgerTest.*:DutyEngineDurable*:DutyEngineState*:SignalEngine*:ReplicaQueue.*'

# Not part of `make test` (a second full build and run: about 35 minutes here):
# every ctest suite, and the unit tests on PostgreSQL, under ASan and UBSan.
asan-test: deps test-deps
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCAREWATCH_SANITIZE=address,undefined $(CMAKE_FLAGS)
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 tests/with_pg.sh \
	  $(ASAN_BUILD)/tests/carewatch_unit_tests

FUZZ_TARGETS := rule_loader report_json grpc_requests evidence_bundle ledger_file config \
  report_stats monitor match_text regex

fuzz-smoke: deps
	CC=clang CXX=clang++ cmake -S . -B $(FUZZ_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCAREWATCH_FUZZ=ON -DCAREWATCH_TOOLS=OFF -DCAREWATCH_SANITIZE=address,undefined $(CMAKE_FLAGS)
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target $(addprefix fuzz_,$(FUZZ_TARGETS))
	@# The corpora earlier long runs grew (tests/fuzz/corpus/README.md): each
	@# target first runs every input in them, then mutates for the rest.
	rm -rf $(FUZZ_BUILD)/corpus-grown && mkdir -p $(FUZZ_BUILD)/corpus-grown
	tar -xJf tests/fuzz/corpus/grown.tar.xz -C $(FUZZ_BUILD)/corpus-grown
	@# JOBS targets at a time: libFuzzer runs one thread, so each has a core.
	@$(MAKE) --no-print-directory -j $(JOBS) --output-sync=target $(addprefix fuzz-run-,$(FUZZ_TARGETS))

# One fuzz target for FUZZ_SECONDS (fuzz-smoke builds it first).
fuzz-run-%:
	@mkdir -p $(FUZZ_BUILD)/corpus/$* $(FUZZ_BUILD)/corpus-grown/$*
	@if ! ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  $(FUZZ_BUILD)/tests/fuzz_$* -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
	    -timeout=$(if $(filter regex,$*),60,10) \
	    -rss_limit_mb=2048 -artifact_prefix=$(FUZZ_BUILD)/ \
	    $(FUZZ_BUILD)/corpus/$* tests/fuzz/corpus/$* $(FUZZ_BUILD)/corpus-grown/$* \
	    > $(FUZZ_BUILD)/fuzz_$*.log 2>&1; then \
	  tail -n 60 $(FUZZ_BUILD)/fuzz_$*.log; echo "fuzz_$* FAILED"; exit 1; \
	fi
	@echo "fuzz_$*: $(FUZZ_SECONDS)s: $$(grep -E '^Done [0-9]+ runs' $(FUZZ_BUILD)/fuzz_$*.log)"

# Builds only what it runs (carewatchd and the carewatch CLI), then serves.
run: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS) --target carewatchd carewatch
	@bash scripts/run.sh $(BUILD)

bench: build test-deps
	$(BUILD)/tools/carewatch_bench
	$(BUILD)/tools/carewatch_bench_ledger
	$(BUILD)/tools/carewatch_bench_signals
	tools/bench/bench_replay.sh 1000000 $(BUILD)
	tools/bench/bench_server.sh 10 $(BUILD)
	tools/bench/bench_pg.sh 10 $(BUILD)
	tools/bench/bench_state.sh $(BUILD) 100000 1000000
	tools/bench/bench_report.sh $(BUILD)
	tools/bench/bench_live_reader.sh $(BUILD)

# A bounded long run: SOAK_EVENTS scenario lines through a real carewatchd in
# SOAK_ROUNDS rounds, sampling RSS and restart time after each (docs/performance.md).
# Then the hostile soak: normal load alone and beside hostile clients,
# HOSTILE_SECONDS each, with RSS, threads and latency (docs/performance.md).
soak: build
	tools/bench/soak.sh $(BUILD) $(SOAK_EVENTS) $(SOAK_ROUNDS)
	tools/bench/hostile_soak.sh $(BUILD) $(HOSTILE_SECONDS)

format:
	clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD) $(TSAN_BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
