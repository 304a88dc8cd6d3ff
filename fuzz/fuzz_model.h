/* fuzz_model.h: the body shared by the checkpoint and GGUF harnesses.

   The bytes are a checkpoint file. read_checkpoint must refuse them through
   fatal() (which returns here under FUZZING, by longjmp) or accept them; an
   accepted model small enough to run also gets two tokens through forward(),
   so a header that passes validation cannot point the kernels out of bounds. */
#define TESTING
#define FUZZING
#include "../run.c"

static int fuzz_model(const uint8_t *data, size_t size) {
    static int ready;
    if (!ready) select_kernels(), ready = 1;
    // The loader expects the alignment load_file gives: 64 bytes is plenty.
    unsigned char *copy = aligned_alloc(64, (size + 64) / 64 * 64);
    memcpy(copy, data, size);
    Model m;
    memset(&m, 0, sizeof(m));
    if (setjmp(fuzz_escape) == 0) {
        read_checkpoint(&m, copy, size, "fuzz");
        const Config *c = &m.config;
        uint64_t work = (uint64_t)c->n_layers * c->dim * (c->dim + c->hidden_dim) + (uint64_t)c->vocab_size * c->dim;
        if (work < (1u << 22)) {
            build_state(&m.state, c, c->seq_len < 4 ? c->seq_len : 4, 2, m.int8, m.blocks);
            int tokens[2] = {c->vocab_size > 1, c->vocab_size - 1};
            forward(&m, tokens, c->seq_len >= 2 ? 2 : 1, 0, LOGITS_ALL);
            free_state(&m.state);
        }
    }
    free(m.weights.layers);
    free_gguf_vocabulary(m.vocab), free(m.vocab);
    free(copy);
    return 0;
}
