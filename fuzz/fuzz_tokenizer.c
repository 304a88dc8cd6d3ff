/* libFuzzer harness: the tokenizer. An input starting with byte 0 is a
   tokenizer.bin file for parse_tokenizer; any other is text for encode() with
   the Llama 2 tokenizer (tokenizer.bin in the working directory), whose ids
   must be in range and whose decoding must be valid UTF-8 without control
   bytes, and give the text back whenever it had no control bytes and no
   U+2581 (which SentencePiece reads as a space). */
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static Tokenizer llama;
    static int ready;
    if (!ready) build_tokenizer(&llama, "tokenizer.bin"), ready = 1;
    if (size == 0) return 0;
    if (data[0] == 0) {
        Tokenizer t;
        memset(&t, 0, sizeof(t));
        if (setjmp(fuzz_escape) == 0) {
            parse_tokenizer(&t, data + 1, size - 1, "fuzz");
            int n;
            free(encode(&t, "Once upon a time \xff", 18, 1, 1, &n));
        }
        free_tokenizer(&t);
        return 0;
    }
    const char *text = (const char *)data;
    int n;
    int *ids = encode(&llama, text, size, 1, 0, &n);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= llama.vocab_size) abort();
    char *out = NULL;
    size_t out_len = 0;
    FILE *f = open_memstream(&out, &out_len);
    Printer p = make_printer(f, NULL, 0);
    for (int i = 1; i < n; i++) print_token(&p, &llama, ids[i - 1], ids[i]);
    print_flush(&p);
    fclose(f);
    if (!valid_printable_utf8(out, out_len)) abort();
    if (valid_printable_utf8(text, size) && find_bytes(text, size, "\xE2\x96\x81", 3) < 0 &&
        (out_len != size || memcmp(out, text, size) != 0))
        abort();
    free(out), free(ids);
    return 0;
}
