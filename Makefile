# Makefile for run: Llama 2 inference in C.  `make help` lists the targets.

CC ?= cc
CFLAGS ?= -O3 -Wall -Wextra
# OpenMP when the compiler has it; without it the pragmas are ignored and run is single-threaded.
OPENMP := $(shell printf 'int main(void){return 0;}' | $(CC) -fopenmp -x c - -o /dev/null 2>/dev/null && echo -fopenmp)
PYTHON ?= /usr/bin/python3
# The small models the tests use, kept in the repository (see models/README.md).
MODELS ?= models

# The program: portable (no -march), so the binary runs on any machine of this architecture.
run: run.c tokenizer.c
	$(CC) $(CFLAGS) $(OPENMP) -o $@ run.c -lm

# The test suite includes run.c whole.
test_all: test_all.c run.c tokenizer.c
	$(CC) $(CFLAGS) -Wno-unused-function $(OPENMP) -o $@ test_all.c -lm

# Every test; model tests read $(MODELS).
test: run test_all
	MODELS=$(MODELS) PYTHON=$(PYTHON) ./test_all

# The kernels on other CPUs, emulated: ARM64 NEON with and without sdot (a cross-built
# test_all under qemu-aarch64), and x86-64 without AVX and without AVX-512 (qemu-x86_64),
# so no SIMD path goes untested and no binary uses an instruction its CPU lacks.
# Needs Debian's gcc-aarch64-linux-gnu, libc6-dev-arm64-cross and qemu-user.
# Each emulated CPU names the kernel sets it must test (RUN_REQUIRE_KERNELS), never the host's.
test-cross: run test_all
	aarch64-linux-gnu-gcc $(CFLAGS) -Wno-unused-function -Wno-unknown-pragmas -o test_all_arm64 test_all.c -lm
	RUN_REQUIRE_KERNELS=neon-sdot,neon QEMU_LD_PREFIX=/usr/aarch64-linux-gnu qemu-aarch64 -cpu max ./test_all_arm64 --in-process | tail -1 | grep -q ' 0 failed' || \
		{ RUN_REQUIRE_KERNELS=neon-sdot,neon QEMU_LD_PREFIX=/usr/aarch64-linux-gnu qemu-aarch64 -cpu max ./test_all_arm64 --in-process | grep -v '^ok'; exit 1; }
	RUN_REQUIRE_KERNELS=neon QEMU_LD_PREFIX=/usr/aarch64-linux-gnu qemu-aarch64 -cpu cortex-a72 ./test_all_arm64 --in-process | tail -1 | grep -q ' 0 failed'
	RUN_REQUIRE_KERNELS= qemu-x86_64 -cpu Nehalem ./test_all --in-process | tail -1 | grep -q ' 0 failed'
	RUN_REQUIRE_KERNELS=avx2 qemu-x86_64 -cpu Haswell ./test_all --in-process | tail -1 | grep -q ' 0 failed'
	@echo "test-cross: arm64 (sdot, no sdot), x86-64 (no AVX, AVX2 only): all passed"

# Windows: run.exe and test_all.exe, cross-built with MinGW-w64 (Debian's gcc-mingw-w64-x86-64),
# -static so that OpenMP's runtime travels inside the .exe.
MINGW_CC ?= x86_64-w64-mingw32-gcc
run.exe: run.c tokenizer.c
	$(MINGW_CC) $(CFLAGS) -fopenmp -static -o $@ run.c -lm
test_all.exe: test_all.c run.c tokenizer.c
	$(MINGW_CC) $(CFLAGS) -Wno-unused-function -fopenmp -static -o $@ test_all.c -lm

# The tests on Windows, under Wine (Debian's wine64): test_all.exe runs the checks that live
# inside it; then this machine's test_all runs every check that runs the program, with
# run.exe as the program (export.py and the shell stay this machine's).
# Wine 8 now and then fails to start a process (status 1 and nothing on stderr, under
# WINEDEBUG=-all; about 1 start in 300 here: "failed to map the shared user data") when
# address-space randomization has put something where it needs its own pages; setarch -R
# starts it without the randomization (0 failures in 500 starts).
# Between two checks the wineserver (which every Wine process talks to) may sit idle for
# its 3 seconds and exit just as the next process connects: "wine client error:0: recvmsg:
# Connection reset by peer" (seen in CI runs here); one started to stay 30 s idle closes that gap.
WINE ?= setarch x86_64 -R /usr/lib/wine/wine64
WINESERVER ?= /usr/lib/wine/wineserver64
WINE_RUN = WINEDEBUG=-all RUN_UNDER_WINE=1
test-windows: run.exe test_all.exe test_all
	$(WINE_RUN) $(WINE) wineboot --init >/dev/null 2>&1 # the first start makes ~/.wine, and says so on stderr
	$(WINE_RUN) $(WINESERVER) -w && $(WINE_RUN) $(WINESERVER) -p30 # wineboot's server gone, ours in its place
	$(WINE_RUN) MODELS=$(MODELS) $(WINE) ./test_all.exe --in-process > test_all.exe.log 2>&1; \
		tail -1 test_all.exe.log | grep -q ' 0 failed' || { grep -v '^ok' test_all.exe.log; exit 1; }
	$(WINE_RUN) RUN_BINARY="$(WINE) ./run.exe" MODELS=$(MODELS) PYTHON=$(PYTHON) ./test_all --programs > test_all-windows.log 2>&1; \
		tail -1 test_all-windows.log | grep -q ' 0 failed' || { grep -v '^ok' test_all-windows.log; exit 1; }
	@echo "test-windows: test_all.exe $$(tail -1 test_all.exe.log); run.exe $$(tail -1 test_all-windows.log)"
	@grep '^SKIP' test_all-windows.log || true

# The strict build, a portability probe: ISO C11 and POSIX.1-2008 with no extensions, every
# warning an error, with gcc and with clang (whose OpenMP is left out, as Apple's clang has none).
STRICT = -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -pedantic
test-strict: test_all
	gcc $(STRICT) -O2 -fopenmp -c run.c -o /dev/null
	gcc $(STRICT) -O2 -fopenmp -Wno-unused-function -c test_all.c -o /dev/null
	clang $(STRICT) -O2 -c run.c -o /dev/null
	clang $(STRICT) -O2 -Wno-unused-function -c test_all.c -o /dev/null
	gcc $(STRICT) -O2 -fopenmp -o run-strict run.c -lm # and it runs: the command-line checks against it
	RUN_BINARY=./run-strict MODELS=$(MODELS) ./test_all --programs cli- > run-strict.log 2>&1; \
		tail -1 run-strict.log | grep -q ' 0 failed' || { grep -v '^ok' run-strict.log; exit 1; }
	@echo "test-strict: gcc and clang, $(STRICT): no warnings; ./run-strict $$(tail -1 run-strict.log)"

# Regenerate the committed tokenizer.bin from Meta's tokenizer.model.
tokenizer: export.py
	$(PYTHON) export.py tokenizer.bin --tokenizer $(MODELS)/tokenizer.model

# Regenerate the committed test references, the Llama 3 vocabulary GGUF and tokenizer.c's
# Unicode table (needs python3-numpy, python3-sentencepiece, python3-jinja2, unicode-data,
# and node with npm for the Hugging Face-compatible reference tokenizer).
references:
	$(PYTHON) tools/unicode_tables.py
	$(PYTHON) tests/make_tokenizer_cases.py $(MODELS)/tokenizer.model
	$(PYTHON) tests/make_tokenizer_cases.py $(MODELS)/tok512.model tests/tokenizer_cases_tok512.tsv
	$(PYTHON) tests/make_vocab_cases.py $(MODELS)/tok512.model
	$(PYTHON) tests/make_chat_cases.py $(MODELS)/tokenizer.model
	$(PYTHON) tests/reference_forward.py $(MODELS)
	$(PYTHON) tests/reference_gguf.py $(MODELS)
	$(PYTHON) export.py $(MODELS)/llama3/llama3-vocab.gguf --tokenizer $(MODELS)/llama3/tokenizer.json
	$(PYTHON) tests/reference_llama3.py $(MODELS)
	[ tests/node_modules/.package-lock.json -nt tests/package-lock.json ] || npm ci --prefix tests --no-audit --no-fund
	$(PYTHON) tests/make_bpe_cases.py $(MODELS)/llama3
	$(PYTHON) tests/make_chat_format_cases.py $(MODELS)/llama3

# The whole suite, hostile inputs included, against a build with AddressSanitizer and
# UndefinedBehaviorSanitizer; any report fails the run (the sanitizers' exit codes differ
# from run's own). Single-threaded: OpenMP adds nothing to check here.
SANITIZE = -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -Wno-unknown-pragmas
test-sanitize:
	$(CC) $(SANITIZE) -Wall -Wextra -o run-sanitize run.c -lm
	$(CC) $(SANITIZE) -Wall -Wextra -Wno-unused-function -o test_all-sanitize test_all.c -lm
	ASAN_OPTIONS=exitcode=99:detect_leaks=1 UBSAN_OPTIONS=exitcode=98:print_stacktrace=1 \
		RUN_BINARY=./run-sanitize MODELS=$(MODELS) PYTHON=$(PYTHON) ./test_all-sanitize

# Fuzzing with libFuzzer (needs clang and Debian's libclang-rt-14-dev): the checkpoint loader,
# the GGUF parser and the tokenizer, FUZZ_SECONDS each, under ASan and UBSan. Seeds are made
# from $(MODELS) in fuzz/build (not kept); inputs that once crashed live in
# tests/fuzz-regressions/ and are replayed by make test. Leak checks are off: a refused file
# ends in fatal(), which exits in the real program, and the harness cannot free what it left.
FUZZ_SECONDS ?= 60
FUZZ_CC ?= clang
FUZZ_FLAGS = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Wno-unknown-pragmas
fuzz:
	mkdir -p fuzz/build
	$(FUZZ_CC) $(FUZZ_FLAGS) -o fuzz/build/fuzz_checkpoint fuzz/fuzz_checkpoint.c -lm
	$(FUZZ_CC) $(FUZZ_FLAGS) -o fuzz/build/fuzz_gguf fuzz/fuzz_gguf.c -lm
	$(FUZZ_CC) $(FUZZ_FLAGS) -o fuzz/build/fuzz_tokenizer fuzz/fuzz_tokenizer.c -lm
	rm -rf fuzz/build/seeds && $(PYTHON) fuzz/make_seeds.py $(MODELS) fuzz/build/seeds
	for h in checkpoint gguf tokenizer; do \
		mkdir -p fuzz/build/corpus-$$h tests/fuzz-regressions/$$h; \
		ASAN_OPTIONS=detect_leaks=0 ./fuzz/build/fuzz_$$h -max_total_time=$(FUZZ_SECONDS) -max_len=1300000 \
			-close_fd_mask=2 -artifact_prefix=tests/fuzz-regressions/$$h/ -print_final_stats=1 \
			fuzz/build/corpus-$$h fuzz/build/seeds/$$h tests/fuzz-regressions/$$h > fuzz/build/$$h.log 2>&1; \
		status=$$?; \
		grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss|==.*ERROR|SUMMARY)" fuzz/build/$$h.log | \
			sed "s/^/fuzz_$$h: /"; \
		[ $$status -eq 0 ] || { echo "fuzz_$$h found a crash: see fuzz/build/$$h.log and tests/fuzz-regressions/$$h/"; exit 1; }; \
	done

# Benchmark: random-weight models of four shapes as llama2.c fp32 and int8 checkpoints and
# GGUF Q8_0 and Q4_0 (1.1B also Q4_K_M), Llama 2 7B in GGUF Q4_K_M and Q4_0, and Llama 3.2 1B
# and Llama 3.1 8B (128,256-token vocabulary) in GGUF Q8_0 and Q4_K_M (written once to
# $BENCH_CACHE, default ~/.cache/run-bench, about 33 GB), this machine's memory bandwidth and
# arithmetic peak, decode and prompt speed with 1 and 2 threads and decode at depth with 2, and the sampler's
# cost over 128,256 logits, as one table; BENCH_BUDGET seconds (see bench/bench.py).
# LLAMA_CPP_BENCH=path/to/llama-bench adds llama.cpp's figures on the same files.
bench: run
	$(PYTHON) bench/bench.py

# Delete the benchmark's cached model files.
bench-clean:
	$(PYTHON) bench/bench.py --clean

clean:
	rm -f run test_all test_all_arm64 run-sanitize test_all-sanitize run.exe test_all.exe test_all.exe.log test_all-windows.log run-strict run-strict.log

help:
	@echo "make            build ./run (-O3, OpenMP when available)"
	@echo "make test       build and run every test (models from MODELS=$(MODELS));"
	@echo "                then ./test_all PREFIX runs only the checks whose id starts with PREFIX"
	@echo "make test-cross the tests on ARM64 and older x86-64 CPUs, under qemu"
	@echo "make test-sanitize  the tests, hostile inputs included, under ASan and UBSan"
	@echo "make run.exe    cross-build the Windows program with MinGW-w64"
	@echo "make test-windows   the tests on Windows: run.exe and test_all.exe under Wine"
	@echo "make test-strict    compile as strict ISO C11 + POSIX with gcc and clang, warnings as errors"
	@echo "make tokenizer  regenerate tokenizer.bin with export.py"
	@echo "make references regenerate the tests' SentencePiece ids and NumPy logits"
	@echo "make fuzz       libFuzzer on the loaders and the tokenizer, FUZZ_SECONDS=$(FUZZ_SECONDS) each"
	@echo "make bench      benchmark ./run: 7 model shapes up to Llama 3 8B, fp32, int8 and GGUF, 1 and 2 threads"
	@echo "make bench-clean delete the benchmark's cached model files"
	@echo "make clean      remove the binaries"

.PHONY: test test-cross test-sanitize test-windows test-strict fuzz tokenizer references bench bench-clean clean help
