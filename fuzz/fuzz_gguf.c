// libFuzzer harness: the GGUF parser. The magic is forced, so every input reaches it.
#include "fuzz_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 4) return 0;
    uint8_t *gguf = malloc(size);
    memcpy(gguf, data, size);
    memcpy(gguf, "GGUF", 4);
    fuzz_model(gguf, size);
    free(gguf);
    return 0;
}
