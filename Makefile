# Makefile for run: Llama 2 inference in C.  `make help` lists the targets.

CC ?= cc
CFLAGS ?= -O3 -Wall -Wextra
# OpenMP when the compiler has it; without it the pragmas are ignored and run is single-threaded.
OPENMP := $(shell printf 'int main(void){return 0;}' | $(CC) -fopenmp -x c - -o /dev/null 2>/dev/null && echo -fopenmp)
PYTHON ?= /usr/bin/python3
MODELS ?= ../shared/models

# The program: portable (no -march), so the binary runs on any machine of this architecture.
run: run.c tokenizer.c
	$(CC) $(CFLAGS) $(OPENMP) -o $@ run.c -lm

# The test suite includes run.c whole.
test_all: test_all.c run.c tokenizer.c
	$(CC) $(CFLAGS) -Wno-unused-function $(OPENMP) -o $@ test_all.c -lm

# Every test; model tests read $(MODELS).
test: run test_all
	MODELS=$(MODELS) PYTHON=$(PYTHON) ./test_all

# Regenerate the committed tokenizer.bin from Meta's tokenizer.model.
tokenizer: export.py
	$(PYTHON) export.py tokenizer.bin --tokenizer $(MODELS)/tokenizer.model

# Regenerate the committed test references (needs python3-numpy and python3-sentencepiece).
references:
	$(PYTHON) tests/make_tokenizer_cases.py $(MODELS)/tokenizer.model
	$(PYTHON) tests/reference_forward.py $(MODELS)

# Debug build with AddressSanitizer and UndefinedBehaviorSanitizer, and the tests under it.
debug: CFLAGS = -O1 -g -Wall -Wextra -fsanitize=address,undefined -fno-omit-frame-pointer
debug: OPENMP =
debug: clean run test_all
	MODELS=$(MODELS) PYTHON=$(PYTHON) ./test_all

clean:
	rm -f run test_all

help:
	@echo "make            build ./run (-O3, OpenMP when available)"
	@echo "make test       build and run every test (models from MODELS=$(MODELS))"
	@echo "make debug      rebuild with ASan/UBSan and run the tests"
	@echo "make tokenizer  regenerate tokenizer.bin with export.py"
	@echo "make references regenerate the tests' SentencePiece ids and NumPy logits"
	@echo "make clean      remove the binaries"

.PHONY: test tokenizer references debug clean help
