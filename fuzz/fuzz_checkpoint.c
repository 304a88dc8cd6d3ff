// libFuzzer harness: llama2.c checkpoints (legacy, version 1, version 2) and GGUF, as run.c loads them.
#include "fuzz_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fuzz_model(data, size); }
