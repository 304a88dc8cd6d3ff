/* libFuzzer harness: the tokenizers. The first byte says what the rest is:
     0: a tokenizer.bin file for parse_tokenizer;
     1: text for encode() with Llama 3's byte-level BPE (models/llama3/llama3-vocab.gguf);
     2: a GGUF file whose vocabulary tokenizer_from_gguf_file must refuse or take
        (hostile merges, pre-tokenizers, types), then encodes a fixed text;
     else: text for encode() with the Llama 2 tokenizer (tokenizer.bin).
   Texts' ids must be in range and their decoding valid UTF-8 without control
   bytes; it must give the text back whenever the text had no control bytes
   (and, for SentencePiece, no U+2581, which it reads as a space). The harness
   runs from the repository's top folder. */
#define TESTING
#define FUZZING
#include "../run.c"

static int valid_printable_utf8(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        int cl = utf8_char_len((const unsigned char *)s + i, n - i);
        unsigned char c = (unsigned char)s[i];
        if (cl == 0 || (c < 0x20 && !(c >= '\t' && c <= '\r')) || c == 0x7F) return 0;
        i += cl;
    }
    return 1;
}

static void check_text(const Tokenizer *t, const char *text, size_t size, int spm) {
    int n;
    int *ids = encode(t, text, size, 1, 0, &n);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= t->vocab_size) abort();
    char *out = NULL;
    size_t out_len = 0;
    FILE *f = open_memstream(&out, &out_len);
    Printer p = make_printer(f, NULL, 0);
    for (int i = 1; i < n; i++) print_token(&p, t, ids[i - 1], ids[i]);
    print_flush(&p);
    fclose(f);
    if (!valid_printable_utf8(out, out_len)) abort();
    if (valid_printable_utf8(text, size) && (!spm || find_bytes(text, size, "\xE2\x96\x81", 3) < 0) &&
        (out_len != size || memcmp(out, text, size) != 0))
        abort();
    free(out), free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static Tokenizer llama2, llama3;
    static int ready;
    if (!ready) {
        size_t n;
        unsigned char *vocab = read_whole_file("models/llama3/llama3-vocab.gguf", &n);
        build_tokenizer(&llama2, "tokenizer.bin");
        tokenizer_from_gguf_file(&llama3, vocab, n, "llama3-vocab.gguf");
        free(vocab);
        ready = 1;
    }
    if (size == 0) return 0;
    if (data[0] == 0 || data[0] == 2) {
        Tokenizer t;
        memset(&t, 0, sizeof(t));
        unsigned char *copy = malloc(size); // aligned as a file read into memory is
        memcpy(copy, data + 1, size - 1);
        if (setjmp(fuzz_escape) == 0) {
            if (data[0] == 0) parse_tokenizer(&t, copy, size - 1, "fuzz");
            else tokenizer_from_gguf_file(&t, copy, size - 1, "fuzz");
            int n;
            free(encode(&t, "Once upon a time \xff  \r\n 123", 26, 1, 1, &n));
        }
        free_tokenizer(&t);
        free(copy);
        return 0;
    }
    if (data[0] == 1) check_text(&llama3, (const char *)data + 1, size - 1, 0);
    else check_text(&llama2, (const char *)data, size, 1);
    return 0;
}
