/* test_all.c: every test of run.c and tokenizer.c, each against an independent
   reference: SentencePiece's ids, a NumPy forward pass, published samples.

       make test                 (builds ./run and this, then runs it)
       MODELS=dir ./test_all     (models from dir instead of the repository's models/)
       ./test_all PREFIX         (only the checks whose id starts with PREFIX:
                                  ./test_all kernels, ./test_all cli-gguf)
       ./test_all --in-process   (only what runs inside this binary, for
                                  make test-cross and make test-windows; a
                                  PREFIX may follow)
       ./test_all --programs     (only what runs ./run, or $RUN_BINARY, as a
                                  program: make test-windows's run.exe)

   It includes run.c whole (with TESTING, which leaves out main) so every
   static function is in reach. Each check prints one line with a stable id;
   the last line counts them: "N passed, N failed". The exit status is 0 only
   when nothing failed.

   Each test function's checks share an id prefix, given beside it in the
   table in main; with a PREFIX, a function none of whose checks can match is
   not run at all, and a check outside its function's prefix fails. A PREFIX
   that matches no check fails too, so a typo cannot pass.

   The model tests read models/ (or $MODELS), which the repository holds. A
   missing file there is a failure that names it (models-present), and the
   tests that would read it do not run. */

#define TESTING
#include "run.c"

#include <dirent.h>

#ifndef _WIN32
#include <sys/wait.h>

// Output into memory: a FILE whose bytes land in *buf (*len of them) when closed.
static FILE *memory_stream(char **buf, size_t *len) { return open_memstream(buf, len); }
static void close_memory_stream(FILE *f) { fclose(f); }

#else
// Windows (make test-windows, under Wine): the few POSIX calls the in-process
// tests make, built of the C library's; the tests that run ./run through a
// shell run on the build machine instead (see the Makefile).
#include <direct.h>
#define WIFEXITED(status) 1 // system() gives the exit status itself
#define WEXITSTATUS(status) (status)
#define WTERMSIG(status) 0

static int link(const char *existing, const char *new_path) { return CreateHardLinkA(new_path, existing, NULL) ? 0 : -1; }

static char *mkdtemp(char *template) { return _mktemp(template) && _mkdir(template) == 0 ? template : NULL; }

// Input from memory: its bytes in a temporary file.
static FILE *fmemopen(void *buf, size_t size, const char *mode) {
    (void)mode;
    FILE *f = tmpfile();
    if (f && size) fwrite(buf, 1, size, f);
    if (f) rewind(f);
    return f;
}

// Output into memory: a temporary file, read back when closed.
static struct {
    FILE *f;
    char **buf;
    size_t *len;
} memory_streams[4];

static FILE *memory_stream(char **buf, size_t *len) {
    FILE *f = tmpfile();
    for (size_t i = 0; f && i < sizeof(memory_streams) / sizeof(memory_streams[0]); i++)
        if (!memory_streams[i].f) {
            memory_streams[i].f = f, memory_streams[i].buf = buf, memory_streams[i].len = len;
            return f;
        }
    fprintf(stderr, "test_all: no room for another memory stream\n");
    exit(1);
}

static void close_memory_stream(FILE *f) {
    for (size_t i = 0; i < sizeof(memory_streams) / sizeof(memory_streams[0]); i++)
        if (memory_streams[i].f == f) {
            rewind(f);
            Text t = read_all(f, "a memory stream");
            *memory_streams[i].buf = t.data, *memory_streams[i].len = t.len;
            memory_streams[i].f = NULL;
        }
    fclose(f);
}
#endif

// Where needle's m bytes first occur in hay's n, or NULL (memmem, which C and POSIX lack).
static char *find_in(const char *hay, size_t n, const char *needle, size_t m) {
    for (size_t i = 0; m <= n && i <= n - m; i++)
        if (memcmp(hay + i, needle, m) == 0) return (char *)hay + i;
    return NULL;
}

static int n_passed, n_failed, n_skipped;
static const char *models_dir;
static const char *only;    // ./test_all PREFIX: the checks whose id starts with it, or NULL for all
static const char *running; // the id prefix of the test function running, from the table in main

static int starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

// Whether the check id is asked for; whether a check whose id starts with prefix can be (one starts the other).
static int wanted(const char *id) { return !only || starts_with(id, only); }
static int could_match(const char *prefix) { return wanted(prefix) || starts_with(only, prefix); }

static void check(const char *id, int ok, const char *fmt, ...) {
    if (running && !starts_with(id, running)) { // ./test_all PREFIX would miss it: fix the table in main
        printf("FAIL %s: its id does not start with %s, its test function's prefix in main\n", id, running);
        n_failed++;
        return;
    }
    if (!wanted(id)) return;
    static char **seen; // every id checked so far: one id, one check
    static size_t n_seen;
    for (size_t i = 0; i < n_seen; i++)
        if (strcmp(seen[i], id) == 0) {
            printf("FAIL %s: this id is already another check's\n", id);
            n_failed++;
            return;
        }
    char **grown = realloc(seen, (n_seen + 1) * sizeof(char *));
    if (grown) seen = grown, seen[n_seen++] = strdup(id);
    printf("%s %s", ok ? "ok  " : "FAIL", id);
    if (!ok && fmt) {
        va_list ap;
        va_start(ap, fmt);
        fputs(": ", stdout);
        vprintf(fmt, ap);
        va_end(ap);
    }
    putchar('\n');
    ok ? n_passed++ : n_failed++;
}

// make test-windows runs the program under Wine, and says so (RUN_UNDER_WINE=1): a check
// of a state Windows does not have is skipped there, by name and with the reason.
static int skipped_under_wine(const char *id, const char *why) {
    if (!getenv("RUN_UNDER_WINE") || !wanted(id)) return 0;
    printf("SKIP %s: %s\n", id, why);
    n_skipped++;
    return 1;
}

// Why the closed-stdin checks are POSIX's only.
static const char closed_stdin_on_wine[] =
    "a closed file descriptor 0 is POSIX's; Wine hands the Windows program one of its own files there";

static char *model_path(const char *name) {
    static char buf[8][4096];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, sizeof(buf[0]), "%s/%s", models_dir, name);
    return p;
}

static int file_exists(const char *path) { return access(path, R_OK) == 0; }

static void write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    fwrite(data, 1, len, f);
    fclose(f);
}

// Every file a test writes lives in one private folder, made by mkdtemp at
// start and removed at exit, so two runs at once do not clobber each other.
static char tmp_dir[512];

static char *tmp_path(const char *name) {
    static char buf[8][1024];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, sizeof(buf[0]), "%s/%s", tmp_dir, name);
    return p;
}

static void remove_tmp_dir(void) { // best effort: the files left in it, then the folder
    DIR *d = opendir(tmp_dir);
    for (struct dirent *e; d && (e = readdir(d));)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) remove(tmp_path(e->d_name));
    if (d) closedir(d);
    rmdir(tmp_dir);
}

// Under $TMPDIR when its name is short and safe to paste into a shell command, else /tmp.
static void make_tmp_dir(void) {
    const char *base = getenv("TMPDIR");
    if (!base || !*base || strlen(base) > 400 ||
        base[strspn(base, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/._-")])
        base = "/tmp";
    snprintf(tmp_dir, sizeof(tmp_dir), "%s/test_all.XXXXXX", base);
    if (!mkdtemp(tmp_dir)) {
        fprintf(stderr, "test_all: cannot make a temporary folder %s: %s\n", tmp_dir, strerror(errno));
        exit(1);
    }
    atexit(remove_tmp_dir); // also when a test ends in fatal()
}

// The next line of f (its newline kept) in row, replacing the last; NULL at the end.
static char *next_line(FILE *f, Text *row) {
    row->len = 0;
    return read_line(f, row) ? row->data : NULL;
}

static char *read_file_text(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    Text t = read_all(f, path);
    fclose(f);
    if (len) *len = t.len;
    return t.data;
}

// ----------------------------------------------------------------------------
// Tokenizer: ids and decoded text against SentencePiece (tests/tokenizer_cases.tsv)

static size_t unhex(const char *hex, char *out) {
    size_t n = 0;
    for (; hex[0] && hex[1]; hex += 2) {
        unsigned v;
        sscanf(hex, "%2x", &v);
        out[n++] = (char)v;
    }
    return n;
}

// The text a Printer writes for these ids.
static char *print_ids(const Tokenizer *t, const int *ids, int n, size_t *len) {
    char *buf = NULL;
    FILE *f = memory_stream(&buf, len);
    Printer p = make_printer(f, NULL, 0);
    for (int i = 1; i < n; i++) print_token(&p, t, ids[i - 1], ids[i]);
    print_flush(&p);
    close_memory_stream(f);
    return buf;
}

// The cases of cases_file (made by tests/make_tokenizer_cases.py) on a vocabulary of
// `vocab` tokens laid out as llama2.c's and Meta's are (<0x00> at 3, <0xFF> at 258; with
// bytes 0, no byte pieces); the file must hold min_cases at least.
static void tokenizer_cases_file(const Tokenizer *tok, const char *prefix, const char *cases_file, int min_cases);

static void tokenizer_cases_bytes(const Tokenizer *tok, const char *prefix, const char *cases_file, int vocab, int bytes,
                                  int min_cases) {
    const Tokenizer *t = tok;
    char id[128];
    snprintf(id, sizeof(id), "%s-load", prefix);
    int byte_pieces = bytes ? t->byte_token[0] == 3 && t->byte_token[255] == 258 : t->byte_token[0] < 0 && t->byte_token[255] < 0;
    check(id, t->vocab_size == vocab && byte_pieces && t->bos_id == 1 && t->eos_id == 2,
          "vocab %d, <0x00> at %d", t->vocab_size, t->byte_token[0]);
    tokenizer_cases_file(tok, prefix, cases_file, min_cases);
}

// Each case of cases_file: the ids of its text (<s> first) and the text printed from
// those ids; prefix-encode-NAME and prefix-decode-NAME.
static void tokenizer_cases_file(const Tokenizer *tok, const char *prefix, const char *cases_file, int min_cases) {
    Tokenizer t = *tok;
    char id[128];
    FILE *f = fopen(cases_file, "rb");
    snprintf(id, sizeof(id), "%s-cases-file", prefix);
    check(id, f != NULL, "cannot open %s", cases_file);
    if (!f) return;
    char *line;
    Text row = {0};
    int n_cases = 0;
    while ((line = next_line(f, &row))) {
        if (line[0] == '#') continue;
        line[strcspn(line, "\n")] = '\0';
        char *name = strtok(line, "\t"), *in_hex = strtok(NULL, "\t"), *ids_text = strtok(NULL, "\t");
        char *out_hex = strtok(NULL, "\t");
        if (!ids_text) { // strtok skips an empty input field: "empty" has ids where the input was
            ids_text = in_hex, in_hex = "";
        }
        if (!out_hex) out_hex = "";
        char *input = malloc(strlen(in_hex) / 2 + 1), *expected_text = malloc(strlen(out_hex) / 2 + 1);
        size_t in_len = unhex(in_hex, input), expected_len = unhex(out_hex, expected_text);
        int *expected = malloc((strlen(ids_text) / 2 + 1) * sizeof(int)), n_expected = 0;
        for (char *tok = strtok(ids_text, " "); tok; tok = strtok(NULL, " ")) expected[n_expected++] = atoi(tok);

        int n;
        int *ids = encode(&t, input, in_len, 1, 0, &n);
        int same = n == n_expected && memcmp(ids, expected, n * sizeof(int)) == 0;
        snprintf(id, sizeof(id), "%s-encode-%s", prefix, name);
        int first_diff = 0;
        while (first_diff < n && first_diff < n_expected && ids[first_diff] == expected[first_diff]) first_diff++;
        check(id, same, "%d ids, SentencePiece %d; first difference at %d (%d vs %d)", n, n_expected, first_diff,
              first_diff < n ? ids[first_diff] : -1, first_diff < n_expected ? expected[first_diff] : -1);

        size_t text_len;
        char *text = print_ids(&t, expected, n_expected, &text_len);
        snprintf(id, sizeof(id), "%s-decode-%s", prefix, name);
        check(id, text_len == expected_len && memcmp(text, expected_text, text_len) == 0,
              "printed %zu bytes, SentencePiece decodes to %zu", text_len, expected_len);
        free(text), free(ids), free(input), free(expected_text), free(expected);
        n_cases++;
    }
    free(row.data);
    fclose(f);
    snprintf(id, sizeof(id), "%s-cases-count", prefix);
    check(id, n_cases >= min_cases, "only %d cases in %s", n_cases, cases_file);
}

static void tokenizer_cases_in(const Tokenizer *tok, const char *prefix, const char *cases_file, int vocab) {
    tokenizer_cases_bytes(tok, prefix, cases_file, vocab, 1, 40);
}

static void tokenizer_cases(const Tokenizer *tok, const char *prefix) {
    tokenizer_cases_in(tok, prefix, "tests/tokenizer_cases.tsv", 32000);
}

static void test_tokenizer_cases(void) {
    Tokenizer t;
    build_tokenizer(&t, "tokenizer.bin");
    tokenizer_cases(&t, "tokenizer");
    free_tokenizer(&t);
}

// The same cases with the vocabulary a GGUF file carries (Meta's tokenizer,
// with SentencePiece's piece types instead of llama2.c's conventions).
static void test_tokenizer_gguf(void) {
    Model m;
    build_model(&m, model_path("llama-2-tiny-random.gguf"), WEIGHTS_MAP, 16, 1, KV_AUTO);
    Tokenizer t;
    tokenizer_from_gguf(&t, m.vocab, "gguf");
    tokenizer_cases(&t, "tokenizer-gguf");
    free_tokenizer(&t);
    free_model(&m);
}

// Llama 3's byte-level BPE, with the vocabulary export.py made from Meta's tokenizer.json:
// ids against a Hugging Face-compatible tokenizer (tests/tokenizer_cases_llama3.tsv) and
// llama.cpp's own test cases (tests/tokenizer_cases_llama_bpe.tsv).
static void load_llama3_tokenizer(Tokenizer *t) {
    size_t size;
    unsigned char *data = read_whole_file(model_path("llama3/llama3-vocab.gguf"), &size);
    tokenizer_from_gguf_file(t, data, size, "llama3-vocab.gguf");
    free(data);
}

static void test_tokenizer_bpe(void) {
    Tokenizer t;
    load_llama3_tokenizer(&t);
    int eot = 0, eom = 0, end_of_text = 0;
    for (int i = 0; i < t.n_end; i++)
        eot |= t.end_id[i] == 128009, eom |= t.end_id[i] == 128008, end_of_text |= t.end_id[i] == 128001;
    check("tokenizer-bpe-load", t.bpe && t.vocab_size == 128256 && t.bos_id == 128000 && t.add_bos && t.ignore_merges,
          "bpe %d, vocab %d, bos %d", t.bpe, t.vocab_size, t.bos_id);
    check("tokenizer-bpe-end-tokens", eot && eom && end_of_text && t.n_end == 3,
          "%d end tokens; <|eot_id|> %d, <|eom_id|> %d, <|end_of_text|> %d", t.n_end, eot, eom, end_of_text);
    check("tokenizer-bpe-control-tokens", t.type[128000] == PIECE_CONTROL && t.type[128255] == PIECE_CONTROL &&
          t.type[127999] == PIECE_NORMAL, NULL);
    tokenizer_cases_file(&t, "tokenizer-bpe-hf", "tests/tokenizer_cases_llama3.tsv", 120);
    tokenizer_cases_file(&t, "tokenizer-bpe-llama-cpp", "tests/tokenizer_cases_llama_bpe.tsv", 46);

    // A control token never comes out of text, nor prints: "<|eot_id|>" typed is text.
    int n;
    int *ids = encode(&t, "a<|eot_id|>b", 12, 0, 0, &n);
    int control = 0;
    for (int i = 0; i < n; i++) control |= t.type[ids[i]] == PIECE_CONTROL;
    check("tokenizer-bpe-marker-is-text", n > 3 && !control, "%d ids", n);
    free(ids);
    int with_control[] = {128000, 9906, 128009, 1917};
    size_t len;
    char *text = print_ids(&t, with_control, 4, &len);
    check("tokenizer-bpe-control-prints-nothing", len == 11 && memcmp(text, "Hello world", 11) == 0, "printed '%s'", text);
    free(text);
    // A character split across pieces is held until it is whole: U+1F999 (the llama emoji) is 4 bytes.
    ids = encode(&t, "\xF0\x9F\xA6\x99", 4, 1, 0, &n);
    text = print_ids(&t, ids, n, &len);
    check("tokenizer-bpe-split-character", n >= 2 && len == 4 && memcmp(text, "\xF0\x9F\xA6\x99", 4) == 0,
          "%d ids, %zu bytes", n, len);
    free(text), free(ids);
    // Pieces that leave a character broken print one U+FFFD per broken sequence, as Python's
    // bytes.decode(errors="replace") does: E9 A4 then a space, a stray A4, and a cut-off E2 82.
    int broken[] = {128000, t.byte_token[0xE9], t.byte_token[0xA4], t.byte_token[' '], t.byte_token[0xA4],
                    t.byte_token['x'], t.byte_token[0xE2], t.byte_token[0x82]};
    text = print_ids(&t, broken, 8, &len);
    const char *want = "\xEF\xBF\xBD \xEF\xBF\xBDx\xEF\xBF\xBD";
    check("tokenizer-bpe-broken-sequence-one-replacement", len == strlen(want) && memcmp(text, want, len) == 0,
          "printed %zu bytes", len);
    free(text);
    free_tokenizer(&t);
}

// Byte pieces that arrive split must still print as whole characters, and a
// broken sequence as U+FFFD per byte, never as silence (llama2.c's bug).
static void test_printer(void) {
    Tokenizer t;
    build_tokenizer(&t, "tokenizer.bin");
    // 🦙 = F0 9F A6 99, as four byte pieces (<0xNN> is id NN + 3 here)
    int llama[] = {1, 0xF0 + 3, 0x9F + 3, 0xA6 + 3, 0x99 + 3};
    size_t len;
    char *s = print_ids(&t, llama, 5, &len);
    check("printer-emoji-bytes", len == 4 && memcmp(s, "\xF0\x9F\xA6\x99", 4) == 0, "got %zu bytes", len);
    free(s);
    int cut[] = {1, 0xE4 + 3, 0xBD + 3, 15043}; // two bytes of a 3-byte character, then "▁Hello"
    s = print_ids(&t, cut, 4, &len);
    check("printer-cut-character", len == 12 && memcmp(s, "\xEF\xBF\xBD\xEF\xBF\xBD Hello", 12) == 0,
          "got '%.*s'", (int)len, s);
    free(s);
    int control[] = {1, 0x07 + 3, 0x1B + 3, 0x0A + 3, 0x09 + 3}; // BEL, ESC dropped; \n, \t kept
    s = print_ids(&t, control, 5, &len);
    check("printer-control-bytes", len == 2 && memcmp(s, "\n\t", 2) == 0, "got %zu bytes", len);
    free(s);
    free_tokenizer(&t);
}

// ----------------------------------------------------------------------------
// tokenizer.bin and export.py

static void test_export(void) {
    size_t a_len = 0, b_len = 0;
    char *ours = read_file_text("tokenizer.bin", &a_len);
    char *theirs = read_file_text(model_path("tokenizer.bin"), &b_len);
    check("export-tokenizer-committed", ours && theirs && a_len == b_len && memcmp(ours, theirs, a_len) == 0,
          "tokenizer.bin differs from llama2.c's %s", model_path("tokenizer.bin"));
    free(ours), free(theirs);

    const char *python = getenv("PYTHON") ? getenv("PYTHON") : "/usr/bin/python3";
    char cmd[8192];
    snprintf(cmd, sizeof(cmd), "%s export.py %s --tokenizer %s 2>/dev/null", python, tmp_path("tok512.bin"),
             model_path("tok512.model"));
    int status = system(cmd);
    ours = read_file_text(tmp_path("tok512.bin"), &a_len);
    theirs = read_file_text(model_path("tok512.bin"), &b_len);
    check("export-tokenizer-tok512", status == 0 && ours && theirs && a_len == b_len && memcmp(ours, theirs, a_len) == 0,
          "export.py on tok512.model (status %d) differs from llama2.c's tok512.bin", status);
    free(ours), free(theirs);
    remove(tmp_path("tok512.bin"));

    // export.py's GGUF writer, tested in Python (tests/test_export.py) against llama.cpp's own
    // stories260K.gguf and a reader written from the spec; each of its checks counts here.
    snprintf(cmd, sizeof(cmd), "%s tests/test_export.py %s > %s 2>&1", python, models_dir, tmp_path("test_export.txt"));
    status = system(cmd);
    FILE *f = fopen(tmp_path("test_export.txt"), "rb");
    char line[4096], id[256];
    int n_lines = 0, ci = getenv("CI") && strcmp(getenv("CI"), "true") == 0;
    while (f && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        char *rest = strchr(line, ' ');
        if (!rest) continue;
        char *why = strstr(rest, ": ");
        snprintf(id, sizeof(id), "export-py-%.*s", (int)(why ? why - rest - 1 : (long)strlen(rest + 1)), rest + 1);
        if (strncmp(line, "ok ", 3) == 0) check(id, 1, NULL), n_lines++;
        else if (strncmp(line, "FAIL ", 5) == 0) check(id, 0, "%s", why ? why + 2 : ""), n_lines++;
        else if (strncmp(line, "skip ", 5) == 0) { // only without PyTorch; CI installs it, so there a skip fails
            if (ci) check(id, 0, "skipped under CI: %s", why ? why + 2 : "");
            else printf("SKIP %s: %s\n", id, why ? why + 2 : "");
            n_lines++;
        }
    }
    if (f) fclose(f);
    check("export-py-suite", status == 0 && n_lines >= 25, "tests/test_export.py exited %d after %d checks", status, n_lines);
    remove(tmp_path("test_export.txt"));
}

// ----------------------------------------------------------------------------
// Forward pass: logits against tests/reference_forward.py (NumPy, float64)

static float max_logit_error(Model *m, const char *expected_file, int *n_checked) {
    FILE *f = fopen(expected_file, "rb");
    if (!f) return INFINITY;
    char *line = NULL;
    Text row = {0};
    int tokens[4096], n_tokens = 0, pos_done = -1;
    float err = 0.0f;
    *n_checked = 0;
    while ((line = next_line(f, &row))) {
        if (line[0] == '#' || strncmp(line, "model ", 6) == 0) continue;
        if (strncmp(line, "tokens ", 7) == 0) {
            char *p = line + 7;
            int n = (int)strtol(p, &p, 10);
            for (int i = 0; i < n && i < 4096; i++) tokens[n_tokens++] = (int)strtol(p, &p, 10);
            continue;
        }
        int pos, id;
        double want;
        if (sscanf(line, "%d %d %lf", &pos, &id, &want) != 3 || pos >= n_tokens) {
            err = INFINITY;
            break;
        }
        while (pos_done < pos) pos_done++, forward(m, &tokens[pos_done], 1, pos_done, LOGITS_LAST);
        float diff = fabsf(m->state.logits[id] - (float)want);
        if (!(diff <= err)) err = diff; // NaN counts as the worst
        (*n_checked)++;
    }
    free(row.data);
    fclose(f);
    return *n_checked > 0 ? err : INFINITY;
}

// Within 1e-4 of the reference with a float32 KV cache; a float16 one rounds
// each key and value to 11 significant bits, so within 1e-2 there.
static void test_logits_kv(const char *id, const char *checkpoint, const char *expected_file, KVCache kv) {
    Model m;
    build_model(&m, checkpoint, WEIGHTS_MAP, 64, 1, kv);
    int n;
    float err = max_logit_error(&m, expected_file, &n), allowed = kv == KV_F16 ? 1e-2f : 1e-4f;
    check(id, err <= allowed, "max |logit - reference| = %g over %d logits (%s)", err, n, expected_file);
    free_model(&m);
}

static void test_logits(const char *id, const char *checkpoint, const char *expected_file) {
    test_logits_kv(id, checkpoint, expected_file, KV_F32);
}

// GGUF's block types: llama.cpp's own quantizations of one model (the widened
// stories260K, models/stories260K-wide/) against tests/reference_gguf.py,
// which dequantizes each type from its format description into a float64
// forward pass. run quantizes each matrix's input to int8 in groups of 32,
// which moves these logits (up to 20) by as much as 0.25 (measured with the
// plain kernels); a misread block moves them by whole units.
static const char *const wide1_files[] = {"Q4_0-pure", "Q4_1-pure", "Q5_0-pure", "Q5_1-pure", "IQ4_NL-pure",
                                          "Q2_K-pure", "Q2_K",      "Q3_K_S-pure", "Q3_K_M", "Q4_K_S-pure",
                                          "Q4_K_M",    "Q5_K_S-pure", "Q5_K_M", "Q6_K",    "IQ4_XS-pure"};

// Mapped (the file's layout), and read into memory, where the files (whose
// tensors sit 32 bytes past a cache line) move to a 64-byte boundary and the
// kernels in use lay out the rows of the types they have panels for.
static void test_wide1_logits(void) {
    for (size_t i = 0; i < sizeof(wide1_files) / sizeof(wide1_files[0]); i++)
        for (int load = WEIGHTS_READ; load <= WEIGHTS_MAP; load++) {
            char gguf[256], expected[256], id[128];
            snprintf(gguf, sizeof(gguf), "stories260K-wide/wide1-%s.gguf", wide1_files[i]);
            snprintf(expected, sizeof(expected), "tests/logits_wide1/wide1-%s.txt", wide1_files[i]);
            snprintf(id, sizeof(id), "forward-wide1-%s-logits%s", wide1_files[i], load == WEIGHTS_READ ? "-read" : "");
            Model m;
            build_model(&m, model_path(gguf), (WeightsLoad)load, 64, 1, KV_AUTO); // a float16 cache, as users get
            int n;
            float err = max_logit_error(&m, expected, &n);
            check(id, err <= 0.4f, "max |logit - reference| = %g over %d logits (%s)", err, n, expected);
            if (load == WEIGHTS_READ) {
                const Matrix *wq = &m.weights.layers[0].wq, *w2 = &m.weights.layers[0].w2;
                int want_packed = kernels.packed_rows[wq->type] != NULL;
                snprintf(id, sizeof(id), "forward-wide1-%s-read-aligned-%s", wide1_files[i],
                         want_packed ? "and-packed" : "as-stored");
                check(id, (uintptr_t)wq->data % 64 == 0 && (want_packed ? wq->packed_rows == wq->rows : !wq->packed_rows) &&
                          (kernels.packed_rows[w2->type] ? w2->packed_rows == w2->rows : !w2->packed_rows),
                      "wq at %d past a cache line, %d of %d rows in panels; w2 %d of %d",
                      (int)((uintptr_t)wq->data % 64), wq->packed_rows, wq->rows, w2->packed_rows, w2->rows);
            }
            free_model(&m);
        }
}

// Rewrites a legacy checkpoint in version 1 layout (norms first, no RoPE
// tables, 256-byte header), with the test's own reading of the format.
static void write_version1(const char *legacy, const char *out) {
    size_t len;
    char *data = read_file_text(legacy, &len);
    int32_t h[7];
    memcpy(h, data, sizeof(h));
    int shared = h[5] > 0, vocab = abs(h[5]);
    size_t dim = h[0], hidden = h[1], layers = h[2], kv_dim = (size_t)h[4] * (h[0] / h[3]);
    size_t sizes[] = {vocab * dim, layers * dim, layers * dim * dim, layers * kv_dim * dim, layers * kv_dim * dim,
                      layers * dim * dim, layers * dim, layers * hidden * dim, layers * dim * hidden,
                      layers * hidden * dim, dim, (size_t)h[6] * (dim / h[3]), shared ? 0 : vocab * dim};
    const float *part[13];
    const float *p = (const float *)(data + 28);
    for (int i = 0; i < 13; i++) part[i] = p, p += sizes[i];
    FILE *f = fopen(out, "wb");
    unsigned char header[256] = {0};
    uint32_t magic = 0x616b3432;
    int32_t version = 1;
    h[5] = vocab;
    memcpy(header, &magic, 4), memcpy(header + 4, &version, 4), memcpy(header + 8, h, 28);
    header[36] = (unsigned char)shared;
    fwrite(header, 1, 256, f);
    int order[] = {1, 6, 10, 0, 2, 3, 4, 5, 7, 8, 9, 12}; // rms_att, rms_ffn, rms_final, embedding, wq..w3, wcls
    for (int i = 0; i < 12; i++) fwrite(part[order[i]], sizeof(float), sizes[order[i]], f);
    fclose(f);
    free(data);
}

// Mean NLL of the reference tokens against tests/nll_stories260K.txt, in windows
// of 48, 20 and 7 positions by llama-perplexity's rule (see perplexity()).
static void test_perplexity(void) {
    FILE *f = fopen("tests/nll_stories260K.txt", "rb");
    check("perplexity-reference-file", f != NULL, "cannot open tests/nll_stories260K.txt");
    if (!f) return;
    int tokens[48] = {1, 484, 477, 48, 355, 30, 359, 23, 48, 351, 274, 509, 39, 104, 259, 127, 291, 62, 28, 17, 203, 433,
                      253, 272, 334, 145, 240, 116, 124, 222, 379, 474, 358, 314, 259, 407, 424, 208, 421, 71, 271, 289,
                      75, 398, 142, 143, 161, 376}; // the "tokens" line of tests/logits_stories260K.txt
    char line[256];
    int n_cases = 0;
    while (fgets(line, sizeof(line), f)) {
        int window, count;
        double want;
        if (line[0] == '#' || sscanf(line, "%d %d %lf", &window, &count, &want) != 3) continue;
        Model m;
        build_model(&m, model_path("stories260K.bin"), WEIGHTS_READ, window, 7, KV_AUTO); // blocks of 7 cross window edges
        Perplexity p = perplexity(&m, tokens, 48, 1);
        char id[64];
        snprintf(id, sizeof(id), "perplexity-window-%d", window);
        check(id, p.n_predicted == count && fabs(p.mean_nll - want) < 1e-5, "%d tokens, NLL %.7f; reference %d, %.7f",
              p.n_predicted, p.mean_nll, count, want);
        free_model(&m);
        n_cases++;
    }
    fclose(f);
    check("perplexity-cases", n_cases == 3, "%d cases", n_cases);
}

// The KV cache grows as positions are used (reserve_positions): a cache that starts with room
// for one position and doubles seven times gives the logits of one made whole at the start,
// for a prompt read in blocks and tokens fed one at a time, in float32 and float16.
static void test_cache_grows(void) {
    for (int f16 = 0; f16 <= 1; f16++) {
        Model whole, grown;
        build_model(&whole, model_path("stories260K.bin"), WEIGHTS_MAP, 512, PROMPT_BLOCK, f16 ? KV_F16 : KV_F32);
        open_checkpoint(&grown, model_path("stories260K.bin"), WEIGHTS_MAP);
        build_state(&grown.state, &grown.config, 512, PROMPT_BLOCK, grown.int8, f16);
        reserve_positions(&grown.state, &grown.config, NULL, 1);
        int tokens[300];
        for (int i = 0; i < 300; i++) tokens[i] = (i * 37 + 11) % grown.config.vocab_size;
        float *a = feed_tokens(&whole, tokens, 200, 0), *b = feed_tokens(&grown, tokens, 200, 0), err = 0.0f;
        for (int pos = 200; pos < 300; pos++) {
            for (int v = 0; v < whole.config.vocab_size; v++)
                if (!(fabsf(a[v] - b[v]) <= err)) err = fabsf(a[v] - b[v]); // NaN counts as the worst
            a = forward(&whole, &tokens[pos], 1, pos, LOGITS_LAST), b = forward(&grown, &tokens[pos], 1, pos, LOGITS_LAST);
        }
        char id[64];
        snprintf(id, sizeof(id), "forward-cache-grows-%s", f16 ? "f16" : "f32");
        check(id, err == 0.0f && grown.state.cache_positions == 512 && whole.state.cache_positions == 512,
              "max |difference| %g; room for %d positions", err, grown.state.cache_positions);
        free_model(&whole), free_model(&grown);
    }
}

// Growing a cache large enough that its old pages go back to the OS while its rows move
// (release_pages, a 2 MB page at a time): 32 stretches of 512 KB of keys and as many of
// values, each row marked with its stretch and position, checked one by one after it doubles.
static void test_cache_rows_move(void) {
    Config c = {.dim = 1024, .hidden_dim = 64, .n_layers = 4, .n_heads = 8, .n_kv_heads = 8, .vocab_size = 16,
                .head_size = 128, .kv_dim = 1024, .group_size = 32, .rope_theta = 10000.0f, .rope_scale = 1.0f};
    State s = {0};
    build_state(&s, &c, 4096, 1, 0, 0);
    reserve_positions(&s, &c, NULL, 1024);
    size_t stretches = (size_t)c.n_layers * c.n_kv_heads;
    for (size_t i = 0; i < stretches; i++)
        for (int pos = 0; pos < 1024; pos++) {
            float *k = kv_row(&s, &c, s.key_cache, (int)(i / c.n_kv_heads), (int)(i % c.n_kv_heads), pos);
            float *v = kv_row(&s, &c, s.value_cache, (int)(i / c.n_kv_heads), (int)(i % c.n_kv_heads), pos);
            for (int j = 0; j < c.head_size; j++) k[j] = (float)(i * 4096 + pos), v[j] = -(float)(i * 4096 + pos);
        }
    reserve_positions(&s, &c, NULL, 1025);
    long wrong = 0;
    for (size_t i = 0; i < stretches; i++)
        for (int pos = 0; pos < 1024; pos++) {
            float *k = kv_row(&s, &c, s.key_cache, (int)(i / c.n_kv_heads), (int)(i % c.n_kv_heads), pos);
            float *v = kv_row(&s, &c, s.value_cache, (int)(i / c.n_kv_heads), (int)(i % c.n_kv_heads), pos);
            for (int j = 0; j < c.head_size; j++) wrong += k[j] != (float)(i * 4096 + pos) || v[j] != -(float)(i * 4096 + pos);
        }
    check("forward-cache-rows-move", wrong == 0 && s.cache_positions == 2048, "%ld values wrong; room for %d positions",
          wrong, s.cache_positions);
    free_state(&s);
}

// align_weights moves a file up by its skew in pieces over the threads (shift_up): files of
// two and three pieces, the last shorter than the skew or not, every byte where it belongs.
static void test_shift_up(void) {
    size_t sizes[] = {PIECE_BYTES + 20, 2 * PIECE_BYTES + 5000}, skews[] = {32, 17};
    for (int c = 0; c < 2; c++) {
        size_t size = sizes[c], skew = skews[c], wrong = 0;
        unsigned char *p = malloc(size + 64);
        for (size_t i = 0; i < size; i++) p[i] = (unsigned char)(i * 131 + (i >> 16));
        shift_up(p, size, skew);
        for (size_t i = 0; i < size; i++) wrong += p[skew + i] != (unsigned char)(i * 131 + (i >> 16));
        char id[64];
        snprintf(id, sizeof(id), "forward-weights-shift-up-%zu-bytes-by-%zu", size, skew);
        check(id, wrong == 0, "%zu bytes out of place", wrong);
        free(p);
    }
}

static void test_forward(void) {
    test_logits("forward-stories260K-logits", model_path("stories260K.bin"), "tests/logits_stories260K.txt");
    test_logits("forward-tiny-random-logits", model_path("llama-2-tiny-random.bin"), "tests/logits_tiny_random.txt");
    char v1[1024];
    snprintf(v1, sizeof(v1), "%s", tmp_path("v1.bin"));
    write_version1(model_path("stories260K.bin"), v1);
    test_logits("forward-version1-shared-logits", v1, "tests/logits_stories260K.txt");
    write_version1(model_path("llama-2-tiny-random.bin"), v1);
    test_logits("forward-version1-unshared-logits", v1, "tests/logits_tiny_random.txt");
    remove(v1);
    // llama.cpp's GGUF files of the same models: F32, and F16 whose values are the .bin's exactly.
    test_logits("forward-gguf-stories260K-logits", model_path("stories260K.gguf"), "tests/logits_stories260K.txt");
    test_logits("forward-gguf-tiny-random-f16-logits", model_path("llama-2-tiny-random.gguf"), "tests/logits_tiny_random.txt");
    test_logits_kv("forward-kv-f16-stories260K-logits", model_path("stories260K.bin"), "tests/logits_stories260K.txt", KV_F16);
    test_logits_kv("forward-kv-f16-tiny-random-logits", model_path("llama-2-tiny-random.gguf"), "tests/logits_tiny_random.txt",
                   KV_F16);
    test_wide1_logits();
    test_cache_grows();
    test_cache_rows_move();
    test_shift_up();
}

// ----------------------------------------------------------------------------
// Generation against the samples published with stories260K

// llama2.c's test_all.py: `run stories260K.bin -z tok512.bin -t 0.0 -n 200`
static const char greedy_story_200[] =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw "
    "a big, red ball. She wanted to play with it, but it was too high.\nLily's mom said, \"Lily, let's go to the "
    "park.\" Lily was sad and didn't know what to do. She said, \"I want to play with your ball, but I can't find "
    "it.\"\nLily was sad and didn't know what to do. She said, \"I'm sorry, Lily. I didn't know what to do.\"\n"
    "Lily didn't want to help her mom, so she\n";

// llama2.c's doc/stories260K.md: `run stories260K.bin -z tok512.bin -t 1.0 -p 0.9 -s 133742` (256 steps)
static const char sampled_story_133742[] =
    "Once upon a time, there was a little boy named Timmy. Timmy loved to play with his toys and eat sandwiches. "
    "One day, Timmy's mom told him it was time to rest for a while. Timmy's friend Billy came over and took him a "
    "down.\nTimmy's mom saw that Timmy was sad, but Timmy said, \"I didn't understand what is it! We need to find "
    "some leafs.\" Timmy thought about it and took a deep breath on a spoon. He hoped it was important to be kind "
    "and continued to find its image next time.\nAfter they finished getting, Timmy's dad came up to his house and "
    "promised to help Timmy.\n";

static char *generate_kv(const char *checkpoint, int block, const char *prompt, float temperature, float topp,
                         int topk, uint64_t seed, int steps, int echo, KVCache kv) {
    Model m;
    Tokenizer t;
    Sampler s;
    build_model(&m, checkpoint, WEIGHTS_READ, steps, block, kv);
    build_tokenizer(&t, model_path("tok512.bin"));
    build_sampler(&s, m.config.vocab_size, temperature, topp, topk, seed);
    char *buf = NULL;
    size_t len;
    FILE *f = memory_stream(&buf, &len);
    Stops no_stops = {NULL, 0};
    generate(&m, &t, &s, prompt, strlen(prompt), steps, echo, &no_stops, f);
    close_memory_stream(f);
    free_sampler(&s), free_tokenizer(&t), free_model(&m);
    return buf;
}

static char *generate_with(const char *checkpoint, int block, const char *prompt, float temperature, float topp,
                           int topk, uint64_t seed, int steps, int echo) {
    return generate_kv(checkpoint, block, prompt, temperature, topp, topk, seed, steps, echo, KV_AUTO);
}

static char *generate_text(const char *prompt, float temperature, float topp, int topk, uint64_t seed, int steps,
                           int echo) {
    return generate_with(model_path("stories260K.bin"), PROMPT_BLOCK, prompt, temperature, topp, topk, seed, steps,
                         echo);
}

static void test_generate(void) {
    char *text = generate_text("", 0.0f, 0.9f, 0, 1, 200, 1);
    check("generate-greedy-published", strcmp(text, greedy_story_200) == 0, "got:\n%s", text);
    free(text);
    text = generate_text("", 1.0f, 0.9f, 0, 133742, 256, 1);
    check("generate-seeded-published", strcmp(text, sampled_story_133742) == 0, "got:\n%s", text);
    free(text);
    // The continuation alone is the echoed text minus the prompt.
    char *echoed = generate_text("Lily and Tom went to the", 0.0f, 0.9f, 0, 1, 64, 1);
    char *alone = generate_text("Lily and Tom went to the", 0.0f, 0.9f, 0, 1, 64, 0);
    int prefixed = strncmp(echoed, "Lily and Tom went to the", 24) == 0;
    check("generate-continuation-only", prefixed && strcmp(echoed + 24, alone) == 0 && strlen(alone) > 10,
          "echoed '%s', alone '%s'", echoed, alone);
    free(echoed), free(alone);
    // Seeds: the same seed, the same text; another seed, another text.
    char *a = generate_text("Once", 1.0f, 0.9f, 0, 42, 80, 1), *b = generate_text("Once", 1.0f, 0.9f, 0, 42, 80, 1);
    char *c = generate_text("Once", 1.0f, 0.9f, 0, 43, 80, 1);
    check("generate-seed-reproducible", strcmp(a, b) == 0, NULL);
    check("generate-seed-matters", strcmp(a, c) != 0, NULL);
    free(a), free(b), free(c);

    // A prompt read in blocks gives the same text as one read token by token.
    const char *long_prompt = "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
                              "park. One day, she saw a big, red ball. She wanted to play with it, but it was too "
                              "high. Lily's mom said, \"Lily, let's go to the park.\" Lily was sad";
    a = generate_with(model_path("stories260K.bin"), 1, long_prompt, 0.0f, 0.9f, 0, 1, 160, 1);
    b = generate_with(model_path("stories260K.bin"), PROMPT_BLOCK, long_prompt, 0.0f, 0.9f, 0, 1, 160, 1);
    c = generate_with(model_path("stories260K.bin"), 7, long_prompt, 0.0f, 0.9f, 0, 1, 160, 1);
    check("generate-prefill-blocks-match-stepwise", strcmp(a, b) == 0 && strcmp(a, c) == 0 && strlen(a) > 300,
          "\nstepwise: %s\nblock %d: %s\nblock 7: %s", a, PROMPT_BLOCK, b, c);
    free(a), free(b), free(c);

    // llama2.c's int8 format: the same greedy text as fp32 for 150 tokens (the
    // first place quantization tips a near-tie is at step 196), both with a
    // float32 KV cache, so that this compares the weights' quantization alone.
    a = generate_kv(model_path("stories260K.bin"), PROMPT_BLOCK, "", 0.0f, 0.9f, 0, 1, 150, 1, KV_F32);
    b = generate_kv(model_path("stories260K_q80_gs4.bin"), PROMPT_BLOCK, "", 0.0f, 0.9f, 0, 1, 150, 1, KV_F32);
    check("generate-int8-matches-fp32", strcmp(a, b) == 0 && strncmp(a, greedy_story_200, 200) == 0,
          "\nfp32: %s\nint8: %s", a, b);
    free(b);
    // A float16 KV cache costs no fidelity: the published greedy story with a
    // float16 cache under the fp32 weights, and the int8 file's perplexity on
    // tests/story.txt within 0.3% of its figure with a float32 cache (measured:
    // 0.02% with AVX-512, 0.08% scalar, 0.17% AVX2 and NEON; 126 tokens scored,
    // so one token's rounding moves it). (Its
    // greedy text is a poor measure: group size 4 leaves near-ties that the
    // kernel sets' roundings tip apart at different places.)
    b = generate_kv(model_path("stories260K.bin"), PROMPT_BLOCK, "", 0.0f, 0.9f, 0, 1, 200, 1, KV_F16);
    check("generate-kv-f16-greedy-published", strcmp(b, greedy_story_200) == 0, "got:\n%s", b);
    free(a), free(b);
    size_t story_len = 0;
    char *story = read_file_text("tests/story.txt", &story_len);
    Tokenizer tok;
    build_tokenizer(&tok, model_path("tok512.bin"));
    int n_story;
    int *story_tokens = encode(&tok, story, story_len, 1, 0, &n_story);
    double ppl[2];
    for (int f16 = 0; f16 < 2; f16++) {
        Model m;
        build_model(&m, model_path("stories260K_q80_gs4.bin"), WEIGHTS_READ, 128, PROMPT_BLOCK, f16 ? KV_F16 : KV_F32);
        ppl[f16] = perplexity(&m, story_tokens, n_story, 1).perplexity;
        free_model(&m);
    }
    check("generate-kv-f16-int8-perplexity", fabs(ppl[1] / ppl[0] - 1.0) < 3e-3, "f32 cache %.5f, f16 cache %.5f",
          ppl[0], ppl[1]);
    free(story_tokens), free(story), free_tokenizer(&tok);
}

// ----------------------------------------------------------------------------
// Chat formats: a whole dialog laid out as run.c lays out a live chat's turns

// An assistant's reply given as text, in each format's spacing and stripping. Only a dialog
// given as text needs it: a live chat feeds each reply's own tokens.
static void chat_reply_text(ChatBuilder *b, const char *reply, size_t reply_len) {
    ChatFormat f = b->format;
    if (f == CHAT_LLAMA2 || f == CHAT_MISTRAL_V1 || f == CHAT_MISTRAL_V3 || f == CHAT_MISTRAL_V7) chat_text_str(b, " ");
    if (f == CHAT_LLAMA2 || f == CHAT_LLAMA3 || f == CHAT_LLAMA31 || f == CHAT_LLAMA32 || f == CHAT_MISTRAL_V3)
        chat_stripped(b, reply, reply_len);
    else
        chat_text(b, reply, reply_len);
    if (f == CHAT_LLAMA2) chat_text_str(b, " ");
}

// The ids of a whole dialog in the format: messages alternate user,
// assistant, ..., user, and the layout ends ready for the assistant's reply.
// (A live chat feeds each reply's own tokens instead of re-encoding its text;
// the tests hold this to each format's Jinja template.) lengths: each
// message's bytes, NUL bytes included; NULL: they are C strings.
static int *encode_dialog(const Tokenizer *t, ChatFormat format, const char *date, const char *system,
                          const char *const *messages, const size_t *lengths, int n_messages, int *n_tokens) {
    ChatBuilder b = {t, format, date, NULL, 0, 0, {0}};
    chat_begin(&b, system);
    for (int i = 0; i < n_messages; i += 2) {
        chat_user(&b, system, messages[i], lengths ? lengths[i] : strlen(messages[i]), i == 0);
        if (i + 1 == n_messages) break;
        chat_reply_text(&b, messages[i + 1], lengths ? lengths[i + 1] : strlen(messages[i + 1]));
        chat_close(&b);
    }
    chat_flush(&b);
    free(b.text.data);
    *n_tokens = b.n;
    return b.ids;
}

// ----------------------------------------------------------------------------
// Chat: Meta's template against SentencePiece (tests/chat_template_ids.txt),
// and scripted conversations on stories260K

static void test_chat_template(void) {
    Tokenizer t;
    build_tokenizer(&t, "tokenizer.bin");
    FILE *f = fopen("tests/chat_template_ids.txt", "rb");
    check("chat-template-file", f != NULL, "cannot open tests/chat_template_ids.txt");
    if (!f) return;
    char *line = NULL, name[128] = "", *system = NULL, *messages[16];
    Text row = {0};
    size_t lengths[16]; // a message may hold a NUL byte
    int n_messages = 0, n_dialogs = 0;
    while ((line = next_line(f, &row))) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, "dialog ", 7) == 0) {
            snprintf(name, sizeof(name), "%s", line + 7);
        } else if (strncmp(line, "system ", 7) == 0) {
            system = NULL;
            if (strcmp(line + 7, "-") != 0) system = calloc(strlen(line) / 2 + 1, 1), unhex(line + 7, system);
        } else if (strncmp(line, "message ", 8) == 0 && n_messages < 16) {
            messages[n_messages] = calloc(strlen(line) / 2 + 1, 1);
            lengths[n_messages] = unhex(line + 8, messages[n_messages]);
            n_messages++;
        } else if (strncmp(line, "ids ", 4) == 0) {
            int want[4096], n_want = 0, n;
            for (char *tok = strtok(line + 4, " "); tok && n_want < 4096; tok = strtok(NULL, " ")) want[n_want++] = atoi(tok);
            int *ids = encode_dialog(&t, CHAT_LLAMA2, "", system, (const char *const *)messages, lengths, n_messages, &n);
            char id[160];
            snprintf(id, sizeof(id), "chat-template-%s", name);
            int first_diff = 0;
            while (first_diff < n && first_diff < n_want && ids[first_diff] == want[first_diff]) first_diff++;
            check(id, n == n_want && first_diff == n, "%d ids, Meta's %d; first difference at %d", n, n_want, first_diff);
            free(ids), free(system);
            for (int i = 0; i < n_messages; i++) free(messages[i]);
            system = NULL, n_messages = 0, n_dialogs++;
        }
    }
    free(row.data);
    fclose(f);
    check("chat-template-dialogs", n_dialogs == 6, "%d dialogs", n_dialogs);
    free_tokenizer(&t);
}

// Every chat format's layout against its family's Jinja template rendered by jinja2 and
// tokenized by a Hugging Face-compatible tokenizer (tests/chat_format_cases.txt, made by
// tests/make_chat_format_cases.py), on Llama 2's vocabulary or Llama 3's; and each
// template recognised as its format.
static void test_chat_formats(void) {
    Model m;
    build_model(&m, model_path("llama-2-tiny-random.gguf"), WEIGHTS_MAP, 16, 1, KV_AUTO);
    Tokenizer llama2, llama3;
    tokenizer_from_gguf(&llama2, m.vocab, "llama-2-tiny-random.gguf");
    load_llama3_tokenizer(&llama3);
    FILE *f = fopen("tests/chat_format_cases.txt", "rb");
    check("chat-format-cases-file", f != NULL, "cannot open tests/chat_format_cases.txt");
    char *line = NULL, name[128] = "", date[32] = "", id[256];
    Text row = {0};
    char *messages[16], *system = NULL;
    size_t lengths[16];
    int n_messages = 0, n_cases = 0, detected[CHAT_FORMATS] = {0};
    ChatFormat format = CHAT_FORMATS;
    const Tokenizer *t = NULL;
    while (f && (line = next_line(f, &row))) {
        line[strcspn(line, "\n")] = '\0';
        char *value = strchr(line, ' ');
        if (!value) continue;
        *value++ = '\0';
        if (strcmp(line, "#") == 0 && strncmp(value, "date ", 5) == 0) snprintf(date, sizeof(date), "%s", value + 5);
        else if (strcmp(line, "case") == 0) snprintf(name, sizeof(name), "%s", value), n_messages = 0;
        else if (strcmp(line, "vocab") == 0) t = strcmp(value, "llama3") == 0 ? &llama3 : &llama2;
        else if (strcmp(line, "format") == 0) {
            format = CHAT_FORMATS;
            for (int k = 0; k < CHAT_FORMATS; k++)
                if (strcmp(value, chat_format_names[k]) == 0) format = (ChatFormat)k;
        } else if (strcmp(line, "template") == 0) {
            size_t tmpl_len;
            char *tmpl = read_file_text(value, &tmpl_len);
            ChatFormat found = tmpl ? detect_chat_format(tmpl, tmpl_len) : CHAT_FORMATS;
            if (format < CHAT_FORMATS && !detected[format]++) {
                snprintf(id, sizeof(id), "chat-format-detect-%s", chat_format_names[format]);
                check(id, found == format, "%s detected as %s", value, found < CHAT_FORMATS ? chat_format_names[found] : "none");
            }
            free(tmpl);
        } else if (strcmp(line, "system") == 0) {
            free(system);
            system = NULL;
            if (strcmp(value, "-") != 0) {
                system = malloc(strlen(value) / 2 + 1);
                system[unhex(value, system)] = '\0';
            }
        } else if (strcmp(line, "message") == 0 && n_messages < 16) {
            messages[n_messages] = malloc(strlen(value) / 2 + 1);
            lengths[n_messages] = unhex(value, messages[n_messages]);
            n_messages++;
        } else if (strcmp(line, "ids") == 0) {
            int *want = malloc((strlen(value) / 2 + 1) * sizeof(int)), n_want = 0, n;
            for (char *tok = strtok(value, " "); tok; tok = strtok(NULL, " ")) want[n_want++] = atoi(tok);
            int *ids = format < CHAT_FORMATS && t ? encode_dialog(t, format, date, system, (const char *const *)messages,
                                                                  lengths, n_messages, &n) : NULL;
            int first_diff = 0;
            while (ids && first_diff < n && first_diff < n_want && ids[first_diff] == want[first_diff]) first_diff++;
            snprintf(id, sizeof(id), "chat-format-%s", name);
            check(id, ids && n == n_want && first_diff == n, "%d ids, the template's %d; first difference at %d (%d vs %d)",
                  ids ? n : -1, n_want, first_diff, ids && first_diff < n ? ids[first_diff] : -1,
                  first_diff < n_want ? want[first_diff] : -1);
            free(ids), free(want);
            for (int i = 0; i < n_messages; i++) free(messages[i]);
            n_messages = 0, n_cases++;
        }
    }
    if (f) fclose(f);
    free(row.data), free(system);
    check("chat-format-cases-count", n_cases >= 80 && date[0], "%d cases, date '%s'", n_cases, date);
    for (int k = 0; k < CHAT_FORMATS; k++) {
        snprintf(id, sizeof(id), "chat-format-covered-%s", chat_format_names[k]);
        check(id, detected[k] > 0, "no case of format %s", chat_format_names[k]);
    }
    free_tokenizer(&llama2), free_tokenizer(&llama3);
    free_model(&m);
}

// A scripted chat on stories260K: turns from a string, replies into a buffer.
static ChatStats scripted_chat(const char *turns, int n_ctx, int reply_limit, const char *stop, char **output) {
    Model m;
    Tokenizer t;
    Sampler s;
    build_model(&m, model_path("stories260K.bin"), WEIGHTS_READ, n_ctx, PROMPT_BLOCK, KV_AUTO);
    build_tokenizer(&t, model_path("tok512.bin"));
    build_sampler(&s, m.config.vocab_size, 0.0f, 0.9f, 0, 1);
    const char *stops[1] = {stop};
    ChatOptions o = {"You are a storyteller.", NULL, reply_limit, {(const char **)stops, stop ? 1 : 0}, 0, CHAT_LLAMA2, ""};
    FILE *in = fmemopen((void *)turns, strlen(turns), "r");
    size_t len;
    FILE *out = memory_stream(output, &len);
    ChatStats stats = chat(&m, &t, &s, &o, in, out);
    fclose(in), close_memory_stream(out);
    free_sampler(&s), free_tokenizer(&t), free_model(&m);
    return stats;
}

static void test_chat(void) {
    char *out;
    ChatStats st = scripted_chat("Tell me a story.\nWhat happened next?\n", 400, 0, NULL, &out);
    int lines = 0;
    for (char *p = out; *p; p++) lines += *p == '\n';
    check("chat-two-turns", st.turns == 2 && lines >= 2 && st.positions > 40, "%d turns, %d positions, %d lines",
          st.turns, st.positions, lines);
    // Each turn adds only its own tokens: nothing already in the cache goes through the model again.
    check("chat-keeps-the-cache", st.forwarded == st.positions, "%ld tokens forwarded for %d positions", st.forwarded,
          st.positions);
    free(out);

    st = scripted_chat("Tell me a story.\nWhat happened next?\n", 512, 60, "bird", &out);
    check("chat-stop-string", st.turns == 2 && !strstr(out, "bird") && st.forwarded == st.positions,
          "%d turns, output '%s'", st.turns, out);
    free(out);

    // A context too small for the whole conversation: it ends cleanly, replies intact.
    st = scripted_chat("One.\nTwo.\nThree.\nFour.\nFive.\nSix.\n", 96, 8, NULL, &out);
    check("chat-context-full-ends-cleanly", st.turns >= 2 && st.turns < 6 && st.positions <= 96 &&
          st.forwarded == st.positions, "%d turns in %d positions", st.turns, st.positions);
    free(out);
}

// ----------------------------------------------------------------------------
// Kernels: every SIMD kernel this CPU runs, against the scalar definition,
// over shapes that hit every tile size and every tail. The scalar set is the
// reference, so it is not compared with itself; the checks it can fail on its
// own (its padding, NaN in softmax) run as kernels-reference-*.

static float test_random(uint64_t *rng) { return random_f32(rng) * 2.0f - 1.0f; }

// A kernel's output starts as NaN: a kernel that adds into it instead of
// writing it, or skips an element, shows. Its padding columns (from `cols` to
// the stride os) must still be NaN afterwards.
static void poison(float *out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = NAN;
}
static int padding_intact(const float *out, size_t os, int cols, int tokens) {
    for (int t = 0; t < tokens; t++)
        for (size_t c = cols; c < os; c++)
            if (!isnan(out[t * os + c])) return 0;
    return 1;
}

// The larger error, NaN the largest of all.
static float worse(float worst, float err) { return isnan(worst) || err <= worst ? worst : err; }

// GGUF's block types: random bytes in every block, its float16 scales set to
// small positive values (random bits could make them NaN or infinite). Each
// kernel set's block_rows is held to the plain one, relative to the sum of
// the magnitudes of the terms (decoded with the plain decode_block).
static void random_blocks(WeightType type, uint8_t *w, int rows, size_t row_bytes, uint64_t *rng) {
    int halves[WEIGHT_TYPES][2] = {[WEIGHT_Q8_0] = {0, -1},  [WEIGHT_Q4_0] = {0, -1}, [WEIGHT_Q4_1] = {0, 2},
                                   [WEIGHT_Q5_0] = {0, -1},  [WEIGHT_Q5_1] = {0, 2},  [WEIGHT_IQ4_NL] = {0, -1},
                                   [WEIGHT_Q2_K] = {80, 82}, [WEIGHT_Q3_K] = {108, -1}, [WEIGHT_Q4_K] = {0, 2},
                                   [WEIGHT_Q5_K] = {0, 2},   [WEIGHT_Q6_K] = {208, -1}, [WEIGHT_IQ4_XS] = {0, -1}};
    for (size_t i = 0; i < rows * row_bytes; i++) w[i] = (uint8_t)random_u32(rng);
    for (int r = 0; r < rows; r++)
        for (size_t b = r * row_bytes; b + block_bytes(type) <= (r + 1) * row_bytes; b += block_bytes(type))
            for (int h = 0; h < 2; h++)
                if (halves[type][h] >= 0) {
                    uint16_t d = 0x2400 + random_u32(rng) % 0x400; // 1/64 .. 1/32
                    w[b + halves[type][h]] = d & 0xFF, w[b + halves[type][h] + 1] = d >> 8;
                }
}

// The sum of |w x| over row r of a row of blocks by token t of the input:
// the scale of a kernel's rounding errors.
static double block_row_magnitude(WeightType type, const uint8_t *row, const Input *in, int t) {
    int n = in->n, values = weight_types[type].values;
    double magnitude = 0.0;
    Block block;
    for (int b = 0; b < n / values; b++) {
        decode_block(type, row + b * block_bytes(type), &block);
        for (int j = 0; j < values; j++) {
            int at = b * values + j;
            magnitude += fabs((double)(block.scale[j / 16] * block.q[j] + block.offset[j / 16]) * in->q[t * n + at] *
                              in->scale[t * (n / 32) + at / 32]);
        }
    }
    return magnitude;
}

// A random quantized input of `tokens` vectors of n values, as quantize_input
// makes it (sums and reordered copies included); free_test_input frees it.
static Input random_test_input(int tokens, int n, uint64_t *rng) {
    size_t xs = n;
    int8_t *xq = malloc(tokens * xs), *runs32 = malloc(tokens * xs), *runs16 = malloc(tokens * xs);
    float *xsc = malloc(tokens * xs / 32 * sizeof(float));
    int32_t *xsum = calloc(tokens * xs / 32, sizeof(int32_t)), *xsum16 = calloc(tokens * xs / 16, sizeof(int32_t));
    for (size_t i = 0; i < tokens * xs; i++) xq[i] = (int8_t)(random_u32(rng) % 255 - 127);
    for (size_t i = 0; i < tokens * xs / 32; i++) xsc[i] = random_f32(rng) * 0.01f;
    for (size_t i = 0; i < tokens * xs; i++) xsum[i / 32] += xq[i], xsum16[i / 16] += xq[i];
    float *scaled_sum = malloc(tokens * xs / 32 * sizeof(float));
    for (size_t g = 0; g < tokens * xs / 32; g++) scaled_sum[g] = xsc[g] * (float)xsum[g];
    for (int t = 0; t < tokens; t++) interleave_runs(runs32 + t * xs, runs16 + t * xs, xq + t * xs, n);
    Input in = {NULL, xq, xsc, xsum, xsum16, scaled_sum, runs32, runs16, tokens, n};
    return in;
}

static void free_test_input(Input *in) {
    free((void *)in->q), free((void *)in->scale), free((void *)in->sum), free((void *)in->sum16), free((void *)in->scaled_sum);
    free((void *)in->q_runs32), free((void *)in->q_runs16);
}

static void test_block_kernels(const KernelSet *ks, uint64_t *rng, int *padding_ok, int *reference_padding_ok) {
    int sizes[][3] = {{1, 1, 256}, {5, 3, 512}, {17, 13, 256}, {4, 6, 768}, {9, 7, 1024}, {33, 4, 256},
                      {18, 9, 1536}, {6, 1, 2048}, {7, 1, 256}, {2, 1, 512}, {16, 64, 512},
                      {3, 1, 288}, {5, 2, 1376}, {4, 1, 32}}; // blocks of 32 past the last whole 256 (15M, 42M)
    for (int type = WEIGHT_Q8_0; type < WEIGHT_TYPES; type++) {
        float worst = 0.0f;
        for (size_t c = 0; c < sizeof(sizes) / sizeof(sizes[0]); c++) {
            int rows = sizes[c][0], tokens = sizes[c][1], n = sizes[c][2], values = weight_types[type].values;
            if (n % values) continue;
            size_t os = rows + 2, row_bytes = n / values * block_bytes(type) + 6; // an Input's stride is n
            uint8_t *w = malloc(rows * row_bytes);
            float *want = malloc(tokens * os * 4), *got = malloc(tokens * os * 4);
            random_blocks(type, w, rows, row_bytes, rng);
            Input in = random_test_input(tokens, n, rng);
            poison(want, tokens * os), poison(got, tokens * os);
            blocks_rows_scalar(type, want, os, w, row_bytes, &in, rows);
            *reference_padding_ok &= padding_intact(want, os, rows, tokens);
            (ks->block_rows[type] ? ks->block_rows[type] : blocks_rows_scalar)(type, got, os, w, row_bytes, &in, rows);
            *padding_ok &= padding_intact(got, os, rows, tokens);
            for (int r = 0; r < rows; r++)
                for (int t = 0; t < tokens; t++) {
                    double magnitude = block_row_magnitude((WeightType)type, w + r * row_bytes, &in, t);
                    worst = worse(worst, fabsf(got[t * os + r] - want[t * os + r]) / (float)(magnitude * 1e-6 + 1e-30));
                }
            free(w), free(want), free(got), free_test_input(&in);
        }
        char id[96];
        snprintf(id, sizeof(id), "kernels-%s-block-%s-vs-scalar", ks->name, weight_types[type].name);
        check(id, worst <= 4.0f, "error %g x 1e-6 of the sum of |w x|", worst);
    }
}

// Rows in panels (repack_weights), through matmul with the kernels in use, on
// matrices whose last rows fall short of a panel and whose widths are not
// multiples of the kernels' stretch of groups (PACKED_CHUNK_GROUPS on
// AVX-512): every row still decodes to what the file holds, and the products
// are held to the plain kernel on the rows as stored. Returns the worst error
// as test_block_kernels measures it.
static float packed_matrix_error(WeightType type, uint64_t *rng, int *layout_ok) {
    int shapes[][3] = {{37, 1, 1056}, {37, 5, 96}, {21, 13, 32}, {48, 64, 512}, {16, 3, 2048}, {33, 2, 64},
                       {19, 6, 1280}, {35, 9, 768}, {16, 1, 256}, {32, 5, 1280}, {32, 12, 1536}};
    float worst = 0.0f;
    for (size_t c = 0; c < sizeof(shapes) / sizeof(shapes[0]); c++) {
        int rows = shapes[c][0], tokens = shapes[c][1], n = shapes[c][2];
        if (n % weight_types[type].values) continue;
        size_t row_bytes = n / weight_types[type].values * block_bytes(type);
        uint8_t *stored = malloc(rows * row_bytes), *packed = malloc(rows * row_bytes);
        random_blocks(type, stored, rows, row_bytes, rng);
        memcpy(packed, stored, rows * row_bytes);
        Matrix as_stored = {type, rows, n, stored, NULL, QBLOCK, row_bytes, 0}, in_panels = as_stored;
        in_panels.data = packed;
        repack_matrix(&in_panels);
        *layout_ok &= in_panels.packed_rows == rows / PACKED_ROWS * PACKED_ROWS;
        float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
        for (int r = 0; r < rows; r++) {
            decode_row(a, &as_stored, r), decode_row(b, &in_panels, r);
            *layout_ok &= memcmp(a, b, n * sizeof(float)) == 0;
        }
        Input in = random_test_input(tokens, n, rng);
        float *want = malloc(tokens * rows * sizeof(float)), *got = malloc(tokens * rows * sizeof(float));
        blocks_rows_scalar(type, want, rows, stored, row_bytes, &in, rows);
        matmul(got, &in, &in_panels);
        for (int r = 0; r < rows; r++)
            for (int t = 0; t < tokens; t++) {
                double magnitude = block_row_magnitude(type, stored + r * row_bytes, &in, t);
                worst = worse(worst, fabsf(got[t * rows + r] - want[t * rows + r]) / (float)(magnitude * 1e-6 + 1e-30));
            }
        free(stored), free(packed), free(a), free(b), free(want), free(got), free_test_input(&in);
    }
    return worst;
}

// The plain kernel on panels (packed_rows_scalar) against the plain kernel on
// the rows as stored: the same sums in the same order, so equal to the bit;
// then each set's panel kernel, where it has one.
static void test_packed_kernels(uint64_t *rng) {
    KernelSet in_use = kernels;
    for (int type = WEIGHT_Q8_0; type < WEIGHT_TYPES; type++) {
        if (!has_packed_layout((WeightType)type)) continue;
        char id[96];
        int layout_ok = 1;
        kernels = (KernelSet){PLAIN_KERNELS};
        kernels.packed_rows[type] = packed_rows_scalar;
        float error = packed_matrix_error((WeightType)type, rng, &layout_ok);
        snprintf(id, sizeof(id), "kernels-packed-%s-rows-decode-as-stored", weight_types[type].name);
        check(id, layout_ok, NULL);
        snprintf(id, sizeof(id), "kernels-packed-%s-plain-kernel-equals-blocks-rows-scalar", weight_types[type].name);
        check(id, error == 0.0f, "error %g x 1e-6 of the sum of |w x|", error);
        for (size_t k = 0; k < sizeof(kernel_sets) / sizeof(kernel_sets[0]); k++) {
            if (!kernel_sets[k].packed_rows[type] || !kernel_sets[k].supported()) continue;
            kernels = kernel_sets[k];
            layout_ok = 1;
            error = packed_matrix_error((WeightType)type, rng, &layout_ok);
            snprintf(id, sizeof(id), "kernels-%s-packed-%s-vs-scalar", kernel_sets[k].name, weight_types[type].name);
            check(id, layout_ok && error <= 4.0f, "rows decode as stored: %s; error %g x 1e-6 of the sum of |w x|",
                  layout_ok ? "yes" : "no", error);
        }
    }
    kernels = in_use;
}

// A NaN in the scores stays visible, as with the scalar softmax: all NaN.
static void check_softmax_keeps_nan(const char *id, void (*softmax_kernel)(float *, int)) {
    float with_nan[5] = {1.0f, NAN, 2.0f, 3.0f, 0.5f};
    softmax_kernel(with_nan, 5);
    int all_nan = 1;
    for (int i = 0; i < 5; i++) all_nan &= isnan(with_nan[i]);
    check(id, all_nan, "softmax of {1, NaN, 2, 3, 0.5}: %g %g %g %g %g", with_nan[0], with_nan[1], with_nan[2],
          with_nan[3], with_nan[4]);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
AVX2 static uint16_t f16c_round(float f) { return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT); }
#endif

// Every block type in the weight type table has its plain decoders, and
// every kernel set compiled in names a kernel for it (docs/weight-types.md).
static void check_weight_type_table(void) {
    size_t n_sets = sizeof(kernel_sets) / sizeof(kernel_sets[0]);
    char what[512] = "";
    for (int type = 0; type < WEIGHT_TYPES; type++) {
        const WeightTypeInfo *info = &weight_types[type];
        const char *name = info->name ? info->name : "(no name)";
        int block = is_block_type((WeightType)type);
        if (!info->name || info->values <= 0 || info->bytes <= 0 ||
            (block && (!info->decode_scales || !info->decode_values || info->values % QBLOCK != 0)))
            snprintf(what + strlen(what), sizeof(what) - strlen(what), " type %d (%s) lacks a field;", type, name);
        for (size_t k = 0; block && k < n_sets; k++)
            if (!kernel_sets[k].block_rows[type])
                snprintf(what + strlen(what), sizeof(what) - strlen(what), " %s has no kernel in set %s;", name,
                         kernel_sets[k].name);
    }
    check("kernels-weight-type-table-complete", what[0] == '\0', "%s", what);
}

static void test_kernels(void) {
    check_weight_type_table();
    uint64_t rng = 99;
    int sizes[][3] = {{1, 1, 1},   {5, 3, 7},    {17, 13, 16}, {4, 6, 64},  {8, 12, 96}, {9, 7, 288},
                      {37, 5, 172}, {16, 32, 768}, {3, 1, 2048}, {33, 4, 100}, {18, 9, 1500},
                      {6, 1, 288}, {7, 1, 100}, {2, 1, 32}};                // one token: the generation kernels
    size_t n_sets = sizeof(kernel_sets) / sizeof(kernel_sets[0]);
    int n_compared = 0, reference_padding_ok = 1; // the scalar kernels, too, write only their rows
    int comparisons[sizeof(kernel_sets) / sizeof(kernel_sets[0])] = {0}; // of each set's kernels with the reference
    for (size_t k = 0; k < n_sets; k++) {
        const KernelSet *ks = &kernel_sets[k];
        char id[96];
        if (strcmp(ks->name, "scalar") == 0) continue; // the reference: compared with itself, it cannot fail
        if (!ks->supported()) {
            snprintf(id, sizeof(id), "kernels-%s-", ks->name);
            if (could_match(id)) printf("SKIP kernels-%s: this CPU does not support the set, not tested here\n", ks->name), n_skipped++;
            continue;
        }
        n_compared++;
        float worst_f32 = 0.0f, worst_q8 = 0.0f;
        int padding_ok = 1; // no matrix kernel wrote outside its rows
        for (size_t c = 0; c < sizeof(sizes) / sizeof(sizes[0]); c++) {
            int rows = sizes[c][0], tokens = sizes[c][1], n = sizes[c][2];
            size_t ws = n + 3, xs = n + 5, os = rows + 2; // strides wider than n: kernels must honour them
            float *w = malloc(rows * ws * sizeof(float)), *x = malloc(tokens * xs * sizeof(float));
            float *want = calloc(tokens * os, sizeof(float)), *got = calloc(tokens * os, sizeof(float));
            for (size_t i = 0; i < rows * ws; i++) w[i] = test_random(&rng);
            for (size_t i = 0; i < tokens * xs; i++) x[i] = test_random(&rng);
            poison(want, tokens * os);
            f32_rows_scalar(want, os, w, ws, x, xs, n, rows, tokens);
            reference_padding_ok &= padding_intact(want, os, rows, tokens);
            poison(got, tokens * os);
            ks->f32_rows(got, os, w, ws, x, xs, n, rows, tokens);
            comparisons[k]++;
            padding_ok &= padding_intact(got, os, rows, tokens);
            for (int t = 0; t < tokens; t++)
                for (int r = 0; r < rows; r++) {
                    // float sums in another order: error grows like sqrt(n) ulps of the terms
                    worst_f32 = worse(worst_f32, fabsf(got[t * os + r] - want[t * os + r]) / (sqrtf((float)n) * 1e-6f));
                }
            // int8 with group sizes 32, 64, 96 and 128: rows are whole groups
            for (int gs = 32; gs <= 128; gs += 32) {
                int nq = (n + gs - 1) / gs * gs;
                size_t qws = nq * 2, qxs = nq * 3;
                int8_t *wq = malloc(rows * qws), *xq = malloc(tokens * qxs);
                float *wsc = malloc(rows * qws / gs * sizeof(float)), *xsc = malloc(tokens * qxs / gs * sizeof(float));
                for (size_t i = 0; i < rows * qws; i++) wq[i] = (int8_t)(random_u32(&rng) % 255 - 127);
                for (size_t i = 0; i < tokens * qxs; i++) xq[i] = (int8_t)(random_u32(&rng) % 255 - 127);
                wq[0] = -128; // a weight may be -128; activations never are
                for (size_t i = 0; i < rows * qws / gs; i++) wsc[i] = random_f32(&rng) * 0.01f;
                for (size_t i = 0; i < tokens * qxs / gs; i++) xsc[i] = random_f32(&rng) * 0.01f;
                int32_t *xsum = calloc(tokens * qxs / gs, sizeof(int32_t));
                for (size_t i = 0; i < tokens * qxs; i++) xsum[i / gs] += xq[i];
                poison(want, tokens * os);
                q8_rows_scalar(want, os, wq, wsc, qws, xq, xsc, xsum, qxs, nq, gs, rows, tokens);
                reference_padding_ok &= padding_intact(want, os, rows, tokens);
                poison(got, tokens * os);
                ks->q8_rows(got, os, wq, wsc, qws, xq, xsc, xsum, qxs, nq, gs, rows, tokens);
                padding_ok &= padding_intact(got, os, rows, tokens);
                for (int t = 0; t < tokens; t++)
                    for (int r = 0; r < rows; r++) {
                        float mag = 1e-4f * 127 * 127 * (nq / gs); // the size of a typical term times groups
                        worst_q8 = worse(worst_q8, fabsf(got[t * os + r] - want[t * os + r]) / (mag * 1e-6f));
                    }
                free(wq), free(xq), free(wsc), free(xsc), free(xsum);
            }
            free(w), free(x), free(want), free(got);
        }
        // Weighted sums of rows, as attention makes them: head sizes with and without tails, one query
        // or several (the AVX-512 set takes four at a time, the rest one at a time), float32 values
        // and float16 ones, as a float16 KV cache holds them.
        float worst_weighted = 0.0f, worst_weighted_f16 = 0.0f;
        for (int c = 0; c < 32; c++) { // n 1, 44, 87, 130 (passes of 64 and 128, tails), rows even and odd; 1, 3, 4, 9 queries
            int n = 1 + 43 * (c % 8 / 2), rows = 1 + n % 37 + c % 2, queries = (int[]){1, 3, 4, 9}[c / 8];
            size_t vs = n + 7, os = n + 5, as = rows + 3;
            float *a = malloc(queries * as * sizeof(float)), *v = malloc(rows * vs * sizeof(float));
            float *want = malloc(queries * os * sizeof(float)), *got = malloc(queries * os * sizeof(float));
            uint16_t *v16 = malloc(rows * vs * sizeof(uint16_t));
            for (size_t i = 0; i < queries * as; i++) a[i] = random_f32(&rng);
            for (size_t i = 0; i < rows * vs; i++) v[i] = test_random(&rng), v16[i] = f32_to_f16(v[i]);
            for (int f16 = 0; f16 <= 1; f16++) {
                poison(want, queries * os), poison(got, queries * os);
                if (f16) weighted_f16_rows_scalar(want, os, a, as, v16, vs, n, rows, queries);
                else weighted_rows_scalar(want, os, a, as, v, vs, n, rows, queries);
                if (f16) ks->weighted_f16_rows(got, os, a, as, v16, vs, n, rows, queries);
                else ks->weighted_rows(got, os, a, as, v, vs, n, rows, queries);
                for (int q = 0; q < queries; q++)
                    for (int i = 0; i < n; i++) {
                        float err = fabsf(got[q * os + i] - want[q * os + i]) / (rows * 1e-6f);
                        if (f16) worst_weighted_f16 = worse(worst_weighted_f16, err);
                        else worst_weighted = worse(worst_weighted, err);
                    }
            }
            free(a), free(v), free(v16), free(want), free(got);
        }
        // Floats into float16 (a float16 KV cache's stores): bit for bit, on values of every size but NaN.
        int to_f16_same = 1;
        for (int n = 1; n <= 100; n += 33) {
            float *f = malloc(n * sizeof(float));
            uint16_t *want = malloc(n * 2), *got = malloc(n * 2);
            for (int i = 0; i < n; i++) {
                uint32_t bits = random_u32(&rng);
                memcpy(&f[i], &bits, 4);
                if (isnan(f[i])) f[i] = 1.0f;
                if (i % 3 == 0) f[i] = test_random(&rng) * 100.0f;
            }
            to_f16_scalar(want, f, n);
            ks->to_f16(got, f, n);
            to_f16_same &= memcmp(want, got, n * 2) == 0;
            free(f), free(want), free(got);
        }
        snprintf(id, sizeof(id), "kernels-%s-to-f16-vs-scalar", ks->name);
        check(id, to_f16_same, NULL);
        snprintf(id, sizeof(id), "kernels-%s-weighted-f16-vs-scalar", ks->name);
        check(id, worst_weighted_f16 <= 2.0f, "error %g x rows x 1e-6", worst_weighted_f16);
        snprintf(id, sizeof(id), "kernels-%s-weighted-vs-scalar", ks->name);
        check(id, worst_weighted <= 2.0f, "error %g x rows x 1e-6", worst_weighted);
        // The steps between the products, over lengths with and without tails and
        // values wide enough to reach exp's limits (SiLU of -100, softmax of 0 and -200).
        float worst_norm = 0.0f, worst_softmax = 0.0f, worst_swiglu = 0.0f;
        for (int n = 1; n <= 1100; n = n * 3 + 2) {
            float *x = malloc(n * sizeof(float)), *wt = malloc(n * sizeof(float)), *up = malloc(n * sizeof(float));
            float *want = malloc(n * sizeof(float)), *got = malloc(n * sizeof(float));
            for (int i = 0; i < n; i++) x[i] = test_random(&rng) * (i % 7 == 3 ? 100.0f : 5.0f), wt[i] = test_random(&rng), up[i] = test_random(&rng);
            if (n > 2) x[1] = -100.0f, x[2] = 100.0f;
            rmsnorm(want, x, wt, n, 1e-5f);
            ks->rmsnorm(got, x, wt, n, 1e-5f);
            for (int i = 0; i < n; i++) worst_norm = worse(worst_norm, fabsf(got[i] - want[i]) / (fabsf(want[i]) + 1e-6f));
            memcpy(want, x, n * sizeof(float)), memcpy(got, x, n * sizeof(float));
            softmax(want, n);
            ks->softmax(got, n);
            for (int i = 0; i < n; i++) worst_softmax = worse(worst_softmax, fabsf(got[i] - want[i]) / (want[i] + 1e-30f));
            memcpy(want, x, n * sizeof(float)), memcpy(got, x, n * sizeof(float));
            swiglu(want, up, n);
            ks->swiglu(got, up, n);
            for (int i = 0; i < n; i++) worst_swiglu = worse(worst_swiglu, fabsf(got[i] - want[i]) / (fabsf(want[i]) + 1e-30f));
            free(x), free(wt), free(up), free(want), free(got);
        }
        { // a prompt block's length, which swiglu_avx512 spreads over the threads (with a tail)
            int n = 70001;
            float *up = malloc(n * sizeof(float)), *want = malloc(n * sizeof(float)), *got = malloc(n * sizeof(float));
            for (int i = 0; i < n; i++) want[i] = got[i] = test_random(&rng) * 5.0f, up[i] = test_random(&rng);
            swiglu(want, up, n);
            ks->swiglu(got, up, n);
            for (int i = 0; i < n; i++) worst_swiglu = worse(worst_swiglu, fabsf(got[i] - want[i]) / (fabsf(want[i]) + 1e-30f));
            free(up), free(want), free(got);
        }
        snprintf(id, sizeof(id), "kernels-%s-softmax-keeps-nan", ks->name);
        check_softmax_keeps_nan(id, ks->softmax);
        snprintf(id, sizeof(id), "kernels-%s-rmsnorm-softmax-swiglu-vs-scalar", ks->name);
        check(id, worst_norm <= 2e-6f && worst_softmax <= 2e-6f && worst_swiglu <= 2e-6f,
              "relative errors: rmsnorm %g, softmax %g, swiglu %g", worst_norm, worst_softmax, worst_swiglu);
        // GGUF's 16-bit floats, random bits in each.
        float worst_half = 0.0f;
        for (size_t c = 0; c < sizeof(sizes) / sizeof(sizes[0]); c++) {
            int rows = sizes[c][0], tokens = sizes[c][1], n = sizes[c][2], nb = (n + 31) / 32 * 32;
            size_t ws = n + 3, xs = nb + 32, os = rows + 2;
            uint16_t *wh = malloc(rows * ws * 2);
            float *x = malloc(tokens * xs * sizeof(float)), *want = calloc(tokens * os, 4), *got = calloc(tokens * os, 4);
            for (size_t i = 0; i < tokens * xs; i++) x[i] = test_random(&rng);
            for (int kind = 0; kind < 2; kind++) { // F16 then BF16: finite values of either sign around 1
                for (size_t i = 0; i < rows * ws; i++)
                    wh[i] = (uint16_t)(kind == 0 ? 0x3000 + random_u32(&rng) % 0x1800 : 0x3E00 + random_u32(&rng) % 0x180) |
                            (random_u32(&rng) & 1) << 15;
                poison(want, tokens * os);
                (kind == 0 ? f16_rows_scalar : bf16_rows_scalar)(want, os, wh, ws, x, xs, n, rows, tokens);
                reference_padding_ok &= padding_intact(want, os, rows, tokens);
                poison(got, tokens * os);
                (kind == 0 ? ks->f16_rows : ks->bf16_rows)(got, os, wh, ws, x, xs, n, rows, tokens);
                padding_ok &= padding_intact(got, os, rows, tokens);
                for (int i = 0; i < tokens; i++)
                    for (int r = 0; r < rows; r++)
                        worst_half = worse(worst_half, fabsf(got[i * os + r] - want[i * os + r]) / (sqrtf((float)n) * 1e-5f));
            }
            free(wh), free(x), free(want), free(got);
        }
        snprintf(id, sizeof(id), "kernels-%s-f16-bf16-vs-scalar", ks->name);
        check(id, worst_half <= 4.0f, "error %g x sqrt(n) x 1e-5", worst_half);
        test_block_kernels(ks, &rng, &padding_ok, &reference_padding_ok);
        // The int8 input, to the bit: group sizes 32, 64 and 4 (stories260K_q80_gs4), a zero group, a NaN.
        int quantize_same = 1;
        for (int gs = 4; gs <= 64 && ks->quantize != quantize; gs *= 2) { // a set with its own
            if (gs == 8 || gs == 16) continue;
            enum { N = 448 }; // 7 groups of 64, 14 of 32
            float x[N];
            int8_t q[2][N];
            float scale[2][N / 4];
            int32_t sum[2][N / 4], sum16[2][N / 16];
            for (int i = 0; i < N; i++) x[i] = i < 64 ? 0.0f : test_random(&rng) * (i < 256 ? 1.0f : 1000.0f);
            x[300] = NAN;
            for (int v = 0; v < 2; v++) {
                memset(sum16[v], 0x55, sizeof(sum16[v]));
                (v == 0 ? quantize : ks->quantize)(q[v], scale[v], sum[v], gs % 16 == 0 ? sum16[v] : NULL, x, N, gs);
            }
            quantize_same &= memcmp(q[0], q[1], N) == 0 && memcmp(scale[0], scale[1], N / gs * sizeof(float)) == 0 &&
                             memcmp(sum[0], sum[1], N / gs * sizeof(int32_t)) == 0 &&
                             (gs % 16 != 0 || memcmp(sum16[0], sum16[1], sizeof(sum16[0])) == 0);
        }
        snprintf(id, sizeof(id), "kernels-%s-quantize-equals-plain", ks->name);
        if (ks->quantize != quantize) check(id, quantize_same, NULL);
        snprintf(id, sizeof(id), "kernels-%s-f32-vs-scalar", ks->name);
        check(id, worst_f32 <= 4.0f, "error %g x sqrt(n) x 1e-6", worst_f32);
        snprintf(id, sizeof(id), "kernels-%s-q8-vs-scalar", ks->name);
        check(id, worst_q8 <= 4.0f, "error %g", worst_q8);
        snprintf(id, sizeof(id), "kernels-%s-write-only-their-rows", ks->name);
        check(id, padding_ok, NULL);
    }
    if (n_compared == 0)
        printf("note: no fast kernel set runs on this CPU: only the scalar reference's own checks run here\n");
    else
        check("kernels-reference-write-only-their-rows", reference_padding_ok, NULL);

    // Every set this CPU supports was compared with the reference (scalar is the reference).
    // RUN_REQUIRE_KERNELS=avx512,avx2 (set by .ci/run from the CPU's flags) names sets that
    // must have been: a CPU feature that select_kernels() fails to see fails here.
    char untested[256] = "";
    for (size_t k = 0; k < n_sets; k++)
        if (strcmp(kernel_sets[k].name, "scalar") != 0 && kernel_sets[k].supported() && comparisons[k] == 0)
            snprintf(untested + strlen(untested), sizeof(untested) - strlen(untested), " %s", kernel_sets[k].name);
    check("kernels-every-supported-set-tested", untested[0] == '\0', "supported but not compared:%s", untested);
    const char *required = getenv("RUN_REQUIRE_KERNELS");
    if (required && required[0]) {
        char missing[256] = "", name[32];
        for (const char *p = required; *p;) {
            size_t len = strcspn(p, ", ");
            snprintf(name, sizeof(name), "%.*s", (int)(len < sizeof(name) ? len : sizeof(name) - 1), p);
            p += len + strspn(p + len, ", ");
            if (!name[0]) continue;
            size_t k = 0;
            while (k < n_sets && strcmp(kernel_sets[k].name, name) != 0) k++;
            const char *why = k == n_sets ? "not in this build"
                              : strcmp(name, "scalar") == 0 ? NULL
                              : !kernel_sets[k].supported() ? "not supported by this CPU, as this program sees it"
                              : comparisons[k] == 0 ? "not compared" : NULL;
            if (why) snprintf(missing + strlen(missing), sizeof(missing) - strlen(missing), " %s (%s)", name, why);
        }
        check("kernels-required-sets-tested", missing[0] == '\0', "RUN_REQUIRE_KERNELS=%s:%s", required, missing);
    }
    check_softmax_keeps_nan("kernels-reference-softmax-keeps-nan", softmax);
    test_packed_kernels(&rng);

    // Half precision: exact values at the edges of the format.
    struct { uint16_t bits; float value; } halves[] = {{0x3C00, 1.0f}, {0xC000, -2.0f}, {0x7BFF, 65504.0f},
        {0x0001, 5.9604645e-8f}, {0x03FF, 6.0975552e-5f}, {0x0400, 6.1035156e-5f}, {0x8000, -0.0f}, {0x3555, 0.33325195f}};
    int halves_ok = 1;
    for (size_t i = 0; i < sizeof(halves) / sizeof(halves[0]); i++) halves_ok &= f16_to_f32(halves[i].bits) == halves[i].value;
    check("kernels-f16-to-f32", halves_ok && isinf(f16_to_f32(0x7C00)) && isnan(f16_to_f32(0x7E00)) &&
          bf16_to_f32(0x3F80) == 1.0f && bf16_to_f32(0xC2F7) == -123.5f, NULL);

    // float32 to float16 and back: every half comes back as itself (NaN as a NaN), and values between
    // two halves round to the nearer, ties to the even one (F16C's vcvtps2ph, independent of this code,
    // where the CPU has it).
    int f16_ok = 1;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = f16_to_f32((uint16_t)h);
        uint16_t back = f32_to_f16(f);
        f16_ok &= isnan(f) ? (back & 0x7C00) == 0x7C00 && (back & 0x3FF) != 0 : back == h;
    }
    uint64_t f16_rng = 5;
    for (int i = 0; i < 200000 && f16_ok; i++) {
        uint32_t bits = random_u32(&f16_rng);
        float f;
        memcpy(&f, &bits, 4);
        if (isnan(f)) continue;
        uint16_t h = f32_to_f16(f);
        float lo = f16_to_f32(h), err = fabsf(f - lo);
        // no other half is nearer: its neighbours are no closer (infinity: f beyond the largest half's half-step)
        uint16_t up = (uint16_t)(h + 1), down = (uint16_t)(h - 1);
        if ((h & 0x7FFF) == 0x7C00) { f16_ok &= fabsf(f) >= 65520.0f; continue; }
        if ((up & 0x7C00) != 0x7C00) f16_ok &= err <= fabsf(f - f16_to_f32(up));
        if ((h & 0x7FFF) != 0) f16_ok &= err <= fabsf(f - f16_to_f32(down));
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
        if (has_avx2()) f16_ok &= h == f16c_round(f);
#endif
    }
    check("kernels-f32-to-f16", f16_ok, NULL);

    // The int8 activations: quantize and back stays within half a step of each group's scale.
    float x[96];
    int8_t q[96];
    float scale[3];
    int32_t sum[3], sum_ok = 1;
    for (int i = 0; i < 96; i++) x[i] = test_random(&rng) * (i < 32 ? 0.0f : i < 64 ? 1.0f : 100.0f);
    int32_t sum16[6];
    quantize(q, scale, sum, sum16, x, 96, 32);
    float worst = 0.0f;
    for (int i = 0; i < 96; i++) { float e = fabsf(q[i] * scale[i / 32] - x[i]) / (scale[i / 32] + 1e-30f); if (e > worst) worst = e; }
    for (int g = 0; g < 3; g++) {
        int32_t total = 0;
        for (int i = 0; i < 32; i++) total += q[g * 32 + i];
        sum_ok &= total == sum[g];
    }
    check("kernels-quantize-roundtrip", worst <= 0.5f && scale[0] == 0.0f && q[0] == 0 && sum_ok, "worst %g steps, sums %s",
          worst, sum_ok ? "right" : "wrong");
}

// A lone token's heads that share a key/value head go through attention() as one block of
// queries at one position (per_pos = the group): the scores of 4 or more take the panel kernels,
// fewer the row kernels. Either way each head's output must be what it gets alone, head by head
// (the path the logits tests hold to NumPy), to float rounding, in float32 and float16 caches;
// and both must be plain attention's, worked out here in double precision.
static void test_attention_groups(void) {
    uint64_t rng = 7;
    const int groups[] = {2, 4, 8}, head_sizes[] = {64, 100}, positions[] = {0, 37, 300};
    float worst = 0.0f, worst_plain = 0.0f;
    int cases = 0;
    for (int f16 = 0; f16 <= 1; f16++)
        for (int gi = 0; gi < 3; gi++)
            for (int hi = 0; hi < 2; hi++)
                for (int pi = 0; pi < 3; pi++) {
                    int G = groups[gi], hs = head_sizes[hi], pos = positions[pi], n_keys = pos + 1;
                    float *q = malloc((size_t)G * hs * sizeof(float)), *kv = malloc(2 * (size_t)n_keys * hs * sizeof(float));
                    uint16_t *kv16 = malloc(2 * (size_t)n_keys * hs * sizeof(uint16_t));
                    float *scores = malloc((size_t)G * n_keys * sizeof(float));
                    float *want = malloc((size_t)G * hs * sizeof(float)), *got = malloc((size_t)G * hs * sizeof(float));
                    for (int i = 0; i < G * hs; i++) q[i] = test_random(&rng) * 2.0f;
                    for (size_t i = 0; i < 2 * (size_t)n_keys * hs; i++) kv16[i] = f32_to_f16(test_random(&rng));
                    for (size_t i = 0; i < 2 * (size_t)n_keys * hs; i++) kv[i] = half_to_f32(kv16[i], WEIGHT_F16);
                    const void *keys = f16 ? (const void *)kv16 : kv;
                    const void *values = f16 ? (const void *)(kv16 + (size_t)n_keys * hs) : kv + (size_t)n_keys * hs;
                    for (int h = 0; h < G; h++)
                        attention(want + h * hs, q + h * hs, hs, keys, values, f16, scores, pos, 1, 1, hs);
                    poison(got, (size_t)G * hs);
                    attention(got, q, hs, keys, values, f16, scores, pos, G, G, hs);
                    for (int i = 0; i < G * hs; i++) worst = worse(worst, fabsf(got[i] - want[i]));
                    for (int h = 0; h < G; h++) { // softmax(q k / sqrt(head size)) weighting the values
                        double *p = malloc((size_t)n_keys * sizeof(double)), max = -1e300, total = 0.0;
                        for (int k = 0; k < n_keys; k++) {
                            p[k] = 0.0;
                            for (int j = 0; j < hs; j++) p[k] += (double)q[h * hs + j] * kv[(size_t)k * hs + j];
                            p[k] /= sqrt((double)hs);
                            if (p[k] > max) max = p[k];
                        }
                        for (int k = 0; k < n_keys; k++) total += p[k] = exp(p[k] - max);
                        for (int j = 0; j < hs; j++) {
                            double out = 0.0;
                            for (int k = 0; k < n_keys; k++) out += p[k] / total * kv[((size_t)n_keys + k) * hs + j];
                            worst_plain = worse(worst_plain, (float)fabs(got[h * hs + j] - out));
                        }
                        free(p);
                    }
                    cases++;
                    free(q), free(kv), free(kv16), free(scores), free(want), free(got);
                }
    check("kernels-attention-heads-together", worst <= 1e-6f, "worst |difference| %g over %d cases (outputs are "
          "averages of values in [-1, 1])", worst, cases);
    check("kernels-attention-vs-plain", worst_plain <= 1e-6f, "worst |difference| from double precision %g over %d cases",
          worst_plain, cases);
}

// ----------------------------------------------------------------------------
// Sampler

static int chosen_ids(Sampler *s, const float *probs, int *ids, float *mass) {
    int n = select_candidates(s, probs, mass);
    for (int i = 0; i < n; i++) ids[i] = s->chosen[i].index;
    return n;
}

static int cmp_prob_desc(const void *a, const void *b) {
    const ProbIndex *x = a, *y = b;
    if (x->prob != y->prob) return x->prob > y->prob ? -1 : 1;
    return x->index - y->index;
}

static void test_sampler(void) {
    Sampler s;
    //                0     1     2     3     4     5
    float probs[] = {0.05f, 0.5f, 0.1f, 0.3f, 0.05f, 0.0f};
    int ids[6], n;
    float mass;
    build_sampler(&s, 6, 1.0f, 0.75f, 0, 1);
    n = chosen_ids(&s, probs, ids, &mass);
    check("sampler-topp-0.75", n == 2 && ids[0] == 1 && ids[1] == 3 && fabsf(mass - 0.8f) < 1e-6f, "kept %d", n);
    s.topp = 0.85f;
    n = chosen_ids(&s, probs, ids, &mass);
    check("sampler-topp-0.85", n == 3 && ids[2] == 2, "kept %d", n);
    s.topp = 0.97f; // both 0.05 tokens tie: the lower id comes first
    n = chosen_ids(&s, probs, ids, &mass);
    check("sampler-topp-ties-by-id", n == 5 && ids[3] == 0 && ids[4] == 4, "kept %d", n);
    float exact[] = {0.25f, 0.5f, 0.25f, 0.0f, 0.0f, 0.0f}; // sums exact in binary
    s.topp = 0.75f; // 0.5 + 0.25 equals topp: llama2.c's rule needs the mass to pass it, so a third is kept
    n = chosen_ids(&s, exact, ids, &mass);
    check("sampler-topp-boundary", n == 3 && ids[0] == 1 && ids[1] == 0 && ids[2] == 2, "kept %d", n);
    s.topp = 0.0f, s.topk = 2;
    n = chosen_ids(&s, probs, ids, &mass);
    check("sampler-topk-2", n == 2 && ids[0] == 1 && ids[1] == 3, "kept %d", n);
    s.topp = 0.9f, s.topk = 3; // top-3 mass 0.9; top-p 0.9 of it is 0.81: 0.5 + 0.3 is not past it
    n = chosen_ids(&s, probs, ids, &mass);
    check("sampler-topk-3-topp-0.9", n == 3, "kept %d", n);
    s.topp = 0.5f; // 0.5 of 0.9 is 0.45: the first token alone passes it
    n = chosen_ids(&s, probs, ids, &mass);
    check("sampler-topk-3-topp-0.5", n == 1 && ids[0] == 1, "kept %d", n);
    free_sampler(&s);

    // Against a full sort, on many random distributions.
    uint64_t rng = 7;
    int vocab = 1000, bad = 0;
    float *p = malloc(vocab * sizeof(float));
    ProbIndex *sorted = malloc(vocab * sizeof(ProbIndex));
    build_sampler(&s, vocab, 1.0f, 0.9f, 0, 1);
    for (int trial = 0; trial < 200; trial++) {
        for (int i = 0; i < vocab; i++) p[i] = random_f32(&rng) * 8.0f * (trial % 3 == 0 ? 1 : random_f32(&rng));
        if (trial % 5 == 0) p[trial % vocab] = p[(trial + 1) % vocab]; // a tie
        softmax(p, vocab);
        for (int i = 0; i < vocab; i++) sorted[i] = (ProbIndex){p[i], i};
        qsort(sorted, vocab, sizeof(ProbIndex), cmp_prob_desc);
        s.topk = trial % 4 == 0 ? 0 : 1 + trial % 50;
        s.topp = (trial % 7) / 7.0f + 0.05f;
        // The reference: the first k, then the shortest prefix whose mass passes topp of theirs.
        int k = s.topk ? s.topk : vocab;
        float kept = 0.0f, cum = 0.0f;
        for (int i = 0; i < k; i++) kept += sorted[i].prob;
        int want = k;
        for (int i = 0; i < k; i++) {
            cum += sorted[i].prob;
            if (cum > s.topp * (s.topk ? kept : 1.0f)) {
                want = i + 1;
                break;
            }
        }
        n = select_candidates(&s, p, &mass);
        int same = n == want;
        for (int i = 0; same && i < n; i++) same = s.chosen[i].index == sorted[i].index;
        if (!same) bad++;
    }
    check("sampler-candidates-vs-sort", bad == 0, "%d of 200 distributions differ", bad);
    free_sampler(&s), free(p), free(sorted);

    // sample_topp, which buckets the candidates instead of sorting them, against a full sort, on
    // distributions from peaked to flat, with ties. Over 1,000 tokens it draws the token the
    // walk over select_candidates's list draws for the same coin. Over Llama 3's 128,256, where
    // that walk sums up to 100,000 floats and drifts, the token must be the one whose stretch
    // of the sorted kept mass, summed in double, holds the coin's point (to 1e-9).
    int mismatches = 0, misplaced = 0, draws = 0;
    for (int big = 0; big <= 1; big++) {
        int n_vocab = big ? 128256 : 1000;
        float *probs = malloc(n_vocab * sizeof(float));
        ProbIndex *all = malloc(n_vocab * sizeof(ProbIndex));
        double *before = malloc(n_vocab * sizeof(double)); // each sorted token's mass before it
        int *rank = malloc(n_vocab * sizeof(int));
        build_sampler(&s, n_vocab, 1.0f, 0.9f, 0, 1);
        for (int trial = 0; trial < (big ? 6 : 60); trial++) {
            float spread = 0.25f * (float)(1 << (trial % 6)); // logits' scale: 0.25 (flat) to 8 (peaked)
            for (int i = 0; i < n_vocab; i++) probs[i] = spread * (random_f32(&rng) + random_f32(&rng) + random_f32(&rng));
            if (trial % 3 == 0)
                for (int i = 0; i < n_vocab; i += 7) probs[i] = probs[0]; // many ties
            softmax(probs, n_vocab);
            s.topp = 0.5f + 0.45f * random_f32(&rng);
            for (int i = 0; i < n_vocab; i++) all[i] = (ProbIndex){probs[i], i};
            qsort(all, n_vocab, sizeof(ProbIndex), cmp_prob_desc);
            double sum = 0.0, kept = 0.0;
            for (int i = 0; i < n_vocab; i++) {
                rank[all[i].index] = i, before[i] = sum, sum += all[i].prob;
                if (kept == 0.0 && sum > s.topp) kept = sum;
            }
            for (int k = 0; k < 10; k++, draws++) {
                float mass_kept, coin = random_f32(&rng), cdf = 0.0f;
                int n_kept = select_candidates(&s, probs, &mass_kept), want = s.chosen[n_kept - 1].index;
                for (int i = 0; i < n_kept; i++)
                    if (coin * mass_kept < (cdf += s.chosen[i].prob)) {
                        want = s.chosen[i].index;
                        break;
                    }
                int got = sample_topp(&s, probs, coin), at = rank[got];
                double point = coin * kept;
                if (got != want && !big) mismatches++;
                if (point < before[at] - 1e-9 || point >= before[at] + probs[got] + 1e-9) misplaced++;
            }
        }
        free_sampler(&s), free(probs), free(all), free(before), free(rank);
    }
    check("sampler-topp-buckets-vs-sorted", mismatches == 0 && misplaced == 0,
          "of %d draws, %d differ over 1,000 tokens, %d fall outside their token's stretch", draws, mismatches, misplaced);

    // Greedy picks the first maximum; a sampled token is always one top-p keeps.
    float logits[] = {1.0f, 3.0f, 3.0f, -2.0f};
    build_sampler(&s, 4, 0.0f, 0.9f, 0, 1);
    check("sampler-greedy-first-max", sample(&s, logits) == 1, NULL);
    free_sampler(&s);
    build_sampler(&s, 6, 1.0f, 0.75f, 0, 12345);
    int counts[6] = {0};
    for (int i = 0; i < 10000; i++) {
        float l[6];
        for (int j = 0; j < 6; j++) l[j] = logf(probs[j] > 0 ? probs[j] : 1e-30f);
        counts[sample(&s, l)]++;
    }
    // 0.5 / 0.8 of draws are id 1: 6250 expected, 5 standard deviations is ~240
    check("sampler-topp-draws", counts[0] + counts[2] + counts[4] + counts[5] == 0 && abs(counts[1] - 6250) < 240,
          "counts %d %d %d %d %d %d", counts[0], counts[1], counts[2], counts[3], counts[4], counts[5]);
    free_sampler(&s);
}

// ----------------------------------------------------------------------------
// The program itself: exit status, stdout and stderr of ./run

typedef struct {
    int status;
    char *out, *err;
    size_t out_len;
    int err_lines;
} RunResult;

// Runs `program args` through the shell; its status, stdout and stderr.
static RunResult run_program(const char *program, const char *args) {
    char cmd[16384];
    snprintf(cmd, sizeof(cmd), "%s %s > %s 2> %s", program, args, tmp_path("run.out"), tmp_path("run.err"));
    int status = system(cmd);
    RunResult r;
    r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.out = read_file_text(tmp_path("run.out"), &r.out_len);
    size_t err_len = 0;
    r.err = read_file_text(tmp_path("run.err"), &err_len);
    r.err_lines = 0;
    for (size_t i = 0; i < err_len; i++) r.err_lines += r.err[i] == '\n';
    return r;
}

// RUN_BINARY: test another build (make test-sanitize points it at a sanitized one).
static RunResult run_cmd(const char *args) { return run_program(getenv("RUN_BINARY") ? getenv("RUN_BINARY") : "./run", args); }

static void free_run(RunResult *r) { free(r->out), free(r->err); }

// A bad input: a non-zero status, nothing on stdout, one line on stderr (at least one
// for a usage error, status 2, which adds the usage) whose first line mentions needle.
static const char *refusal_wrong(const RunResult *r, int want_status, const char *needle) {
    const char *at = r->err ? strstr(r->err, needle) : NULL;
    if (r->out_len != 0) return "output on stdout";
    if (want_status == 2 ? r->err_lines < 1 : r->err_lines != 1) return "not one line on stderr";
    if (!at || at > strchr(r->err, '\n')) return "stderr's first line does not say what was expected";
    return NULL;
}

// One run of ./run as a row of a table. args: $M stands for the models folder,
// $T for this run's temporary folder.
typedef struct {
    const char *id, *args;
    int status;                              // the exit status wanted
    const char *out;                         // stdout is exactly this,
    const char *out_start;                   // or begins with this,
    const char *err;                         // or is empty, and stderr's first line has this (refusal_wrong)
    const char *(*also)(const RunResult *r); // a further condition: what is wrong, or NULL
    const char *not_on_windows;              // why the check is skipped under Wine (skipped_under_wine)
} CliCase;

static void expand_args(char *out, size_t cap, const char *args) {
    size_t n = 0;
    for (const char *p = args; *p && n + 1 < cap; p++) {
        const char *with = p[0] != '$' ? NULL : p[1] == 'M' ? models_dir : p[1] == 'T' ? tmp_dir : NULL;
        if (!with) {
            out[n++] = *p;
            continue;
        }
        size_t len = strlen(with);
        if (n + len + 1 >= cap) break;
        memcpy(out + n, with, len), n += len, p++;
    }
    out[n] = '\0';
}

static RunResult run_args(const char *args) {
    char expanded[16384];
    expand_args(expanded, sizeof(expanded), args);
    return run_cmd(expanded);
}

// What is wrong with the run of c, or NULL.
static const char *cli_case_wrong(const CliCase *c, const RunResult *r) {
    if (r->status != c->status) return "wrong exit status";
    if (!r->out || !r->err) return "no output captured";
    if (c->out && strcmp(r->out, c->out) != 0) return "stdout differs";
    if (c->out_start && strncmp(r->out, c->out_start, strlen(c->out_start)) != 0) return "stdout begins otherwise";
    if (c->err) {
        const char *wrong = refusal_wrong(r, c->status, c->err);
        if (wrong) return wrong;
    }
    return c->also ? c->also(r) : NULL;
}

static void check_cli_case(const CliCase *c) {
    if (!wanted(c->id)) return; // ./test_all PREFIX: not asked for
    if (c->not_on_windows && skipped_under_wine(c->id, c->not_on_windows)) return;
    RunResult r = run_args(c->args);
    const char *wrong = cli_case_wrong(c, &r);
    check(c->id, !wrong, "%s: status %d (want %d), stdout '%.2000s', stderr '%.500s'", wrong, r.status, c->status,
          r.out ? r.out : "", r.err ? r.err : "");
    free_run(&r);
}

// The perplexity ./run reports for these arguments, or 0 if it reports none.
static double cli_perplexity(const char *args) {
    RunResult r = run_args(args);
    double p = 0.0;
    if (r.status == 0 && r.out) sscanf(r.out, "perplexity %lf", &p);
    free_run(&r);
    return p;
}

static const char *more_than_40_bytes(const RunResult *r) {
    return r->out_len > 40 ? NULL : "40 bytes or fewer on stdout";
}

// Chat from a script: two lines in, two replies out, no template text shown.
static const char *two_replies(const RunResult *r) {
    int lines = 0;
    for (size_t i = 0; i < r->out_len; i++) lines += r->out[i] == '\n';
    return lines < 2 ? "fewer than 2 lines on stdout" : strstr(r->out, "INST") ? "INST on stdout" : NULL;
}

// A chat of one turn from a script: a reply ended by a newline, nothing on stderr, no
// marker of the format on stdout.
static const char *plain_reply(const RunResult *r) {
    if (r->out_len < 2 || r->out[r->out_len - 1] != '\n') return "no reply and newline on stdout";
    return r->err[0] ? "output on stderr" : strstr(r->out, "<|") ? "a marker on stdout" : NULL;
}

// -h: nothing on stderr; every option of the usage text at the start of one of its lines.
static const char *lists_every_option(const RunResult *r) {
    static char wrong[64];
    const char *options[] = {"-t", "-p", "-k", "-s", "-n", "-i", "-e", "-z", "-m", "-y", "-r", "--chat-format", "--stop", "-l", "--kv", "-h"};
    if (r->err[0] != '\0') return "output on stderr";
    for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
        char want[16];
        snprintf(want, sizeof(want), "\n  %s ", options[i]);
        if (!strstr(r->out, want)) return snprintf(wrong, sizeof(wrong), "option %s not listed", options[i]), wrong;
    }
    return NULL;
}

#define STORIES "$M/stories260K.bin -z $M/tok512.bin" // the model and tokenizer most rows run

static void test_cli(void) {
    // The files some rows read from $T: a prompt, and files to refuse.
    write_file(tmp_path("prompt.txt"), "Lily and Tom went to the\n", 25);
    char long_prompt[300 * 13 + 1] = ""; // longer than stories260K's 512 positions
    for (int i = 0; i < 300; i++) memcpy(long_prompt + 13 * i, "Lily and Tom ", 13);
    write_file(tmp_path("long-prompt.txt"), long_prompt, 300 * 13);
    size_t len = 0;
    char *whole = read_file_text(model_path("stories260K.bin"), &len);
    write_file(tmp_path("trunc.bin"), whole, 100000);
    free(whole);
    int32_t header[7] = {64, 172, 5, 6, 4, 512, 512}; // 6 heads do not divide 64
    write_file(tmp_path("header.bin"), header, sizeof(header));
    // An int8 group size that does not divide hidden_dim 172 (llama2.c's runq
    // silently computes garbage with one): the header of the gs 4 file, patched to 64.
    whole = read_file_text(model_path("stories260K_q80_gs4.bin"), &len);
    int32_t gs64 = 64;
    memcpy(whole + 37, &gs64, 4);
    write_file(tmp_path("gs64.bin"), whole, len);
    free(whole);
    // GGUF files this program must refuse by name: an IQ2_XXS tensor (a type it does not run), a Q4_K
    // tensor whose rows are not whole blocks of 256, another architecture, cut-off files.
    whole = read_file_text(model_path("stories260K.gguf"), &len);
    char *gguf = malloc(len);
    const char *tensor = "blk.0.attn_q.weight", *arch_key = "general.architecture";
    memcpy(gguf, whole, len);
    char *at = find_in(gguf, len, tensor, strlen(tensor));
    uint32_t iq2_xxs = 16, q4_k = 12; // after the name: uint32 dimensions, two uint64 extents, then the uint32 type
    memcpy(at + strlen(tensor) + 4 + 16, &iq2_xxs, 4);
    write_file(tmp_path("iq2_xxs.gguf"), gguf, len);
    memcpy(at + strlen(tensor) + 4 + 16, &q4_k, 4);
    write_file(tmp_path("q4_k.gguf"), gguf, len);
    memcpy(gguf, whole, len);
    at = find_in(gguf, len, arch_key, strlen(arch_key)); // then uint32 type 8, uint64 length 5, "llama"
    memcpy(at + strlen(arch_key) + 4 + 8, "mamba", 5);
    write_file(tmp_path("mamba.gguf"), gguf, len);
    write_file(tmp_path("cut-5000.gguf"), whole, 5000);
    write_file(tmp_path("cut-data.gguf"), whole, len - 1000);
    free(gguf), free(whole);

    const CliCase cases[] = {
        {"cli-tokenize", "-m tokenize -z tokenizer.bin -i \"Hello world\"", 0, .out = "1 15043 3186\n"},
        {"cli-tokenize-stdin", "-m tokenize -z tokenizer.bin < tests/tokenizer_cases.tsv", 0, .out_start = "1 "},
        {"cli-greedy-published", STORIES " -t 0 -n 200", 0, .out = greedy_story_200},
        {"cli-weights-mapped", STORIES " -t 0 -n 200 -l map", 0, .out = greedy_story_200},
        // The prompt from stdin, as a pipe or file does, or as -i - asks; with -e 0, the continuation alone.
        {"cli-prompt-from-stdin", STORIES " -t 0 -n 64 < $T/prompt.txt", 0, .out_start = "Lily and Tom went to the ",
         .also = more_than_40_bytes},
        {"cli-continuation-only", STORIES " -t 0 -n 64 -e 0 < $T/prompt.txt", 0, .out_start = " park."},
        {"cli-prompt-dash", STORIES " -t 0 -n 64 -i - < $T/prompt.txt", 0, .out_start = "Lily and Tom went to the "},
        // The acceptance's UTF-8: byte-fallback characters echo whole.
        {"cli-utf8-echo", "$M/llama-2-tiny-random.bin -z tokenizer.bin -t 0 -n 48 -i \"café 饕餮 🦙\"", 0,
         .out_start = "café 饕餮 🦙"},
        {"cli-chat-script", STORIES " -m chat -t 0 -n 400 < tests/chat_turns.txt", 0, .also = two_replies},
        // --stop in generate mode: the text ends before the stop string, which is not printed.
        {"cli-generate-stop", STORIES " -t 0 -n 200 --stop Lily --stop \"red ball\"", 0,
         .out = "Once upon a time, there was a little girl named \n"},
        {"cli-help", "-h", 0, .out_start = "Usage:", .also = lists_every_option},
        {"cli-help-long", "--help", 0, .out_start = "Usage:", .also = lists_every_option},
        // GGUF: the same greedy story as the .bin, with the tokenizer from the file (no -z).
        {"cli-gguf-greedy-published", "$M/stories260K.gguf -t 0 -n 200", 0, .out = greedy_story_200},
        {"cli-gguf-mapped", "$M/stories260K.gguf -t 0 -n 200 -l map", 0, .out = greedy_story_200},
        {"cli-gguf-tokenize", "$M/llama-2-tiny-random.gguf -m tokenize -i \"Hello world\"", 0, .out = "1 15043 3186\n"},

        // Bad files: one line naming the problem, status 1, nothing on stdout.
        {"cli-truncated-checkpoint", "$T/trunc.bin -z $M/tok512.bin", 1, .err = "1056540 bytes, but the file has 100000"},
        {"cli-tokenizer-mismatch", "$M/stories260K.bin -z tokenizer.bin", 1, .err = "tokenizer.bin has 32000 tokens but"},
        {"cli-missing-checkpoint", "/nonexistent.bin -z tokenizer.bin", 1, .err = "cannot open checkpoint"},
        {"cli-missing-tokenizer", "$M/stories260K.bin -z /nonexistent.tok", 1, .err = "cannot open /nonexistent.tok"},
        {"cli-tokenizer-not-a-tokenizer", "-m tokenize -z tests/tokenizer_cases.tsv -i x", 1, .err = "token"},
        {"cli-bad-header", "$T/header.bin -z $M/tok512.bin", 1, .err = "not a multiple of n_heads"},
        {"cli-int8-group-size-refused", "$T/gs64.bin -z $M/tok512.bin", 1, .err = "group size 64 does not fit"},
        {"cli-gguf-unsupported-type", "$T/iq2_xxs.gguf", 1,
         .err = "tensor blk.0.attn_q.weight has type IQ2_XXS, supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1"},
        {"cli-gguf-block-does-not-divide-row", "$T/q4_k.gguf", 1,
         .err = "tensor blk.0.attn_q.weight has type Q4_K, whose blocks of 256 do not divide its rows of 64"},
        {"cli-gguf-other-architecture", "$T/mamba.gguf", 1, .err = "architecture 'mamba'"},
        {"cli-gguf-truncated", "$T/cut-5000.gguf", 1, .err = "GGUF file cut short"},
        {"cli-gguf-truncated-data", "$T/cut-data.gguf", 1, .err = "runs past the end of the file"},
        {"cli-prompt-too-long", STORIES " -n 0 -i - < $T/long-prompt.txt", 1,
         .err = "longer than the model's context of 512 positions"},

        // Bad flags: exit status 2, with the usage.
        {"cli-flag-negative-temperature", STORIES " -t -1", 2, .err = "-t wants"},
        {"cli-flag-topp-above-1", STORIES " -p 1.5", 2, .err = "-p wants"},
        {"cli-flag-steps-not-a-number", STORIES " -n ten", 2, .err = "-n wants"},
        {"cli-flag-steps-negative", STORIES " -n -5", 2, .err = "-n wants"},
        {"cli-flag-trailing-letter", STORIES " -t 0.5x", 2, .err = "-t wants"},
        {"cli-flag-nan", STORIES " -t nan", 2, .err = "-t wants"},
        {"cli-flag-unknown", STORIES " -q 1", 2, .err = "unknown option"},
        {"cli-flag-missing-value", STORIES " -t", 2, .err = "needs a value"},
        {"cli-flag-bad-mode", STORIES " -m dance", 2, .err = "-m wants"},
        {"cli-flag-bad-load", STORIES " -l mmap", 2, .err = "-l wants"},
        {"cli-flag-two-checkpoints", STORIES " other.bin", 2, .err = "one checkpoint expected"},
        {"cli-no-checkpoint", "-t 0 < /dev/null", 2, .err = "no checkpoint"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) check_cli_case(&cases[i]);
    const char *made[] = {"prompt.txt", "long-prompt.txt", "trunc.bin", "header.bin", "gs64.bin", "iq2_xxs.gguf", "q4_k.gguf",
                          "mamba.gguf", "cut-5000.gguf", "cut-data.gguf"};
    for (size_t i = 0; i < sizeof(made) / sizeof(made[0]); i++) remove(tmp_path(made[i]));

    // Perplexity of a story (tests/story.txt, written for these tests): int8 within 1% of fp32.
    if (!could_match("cli-ppl-") && !could_match("cli-export-")) return; // ./test_all PREFIX: not asked for
    // Windows of 128, as the llama.cpp references in models/stories260K-wide/ were measured.
    double fp32 = cli_perplexity(STORIES " -m ppl -n 128 < tests/story.txt");
    if (could_match("cli-ppl-")) {
        double int8 = cli_perplexity("$M/stories260K_q80_gs4.bin -z $M/tok512.bin -m ppl -n 128 < tests/story.txt");
        check("cli-ppl-int8-within-1pct-of-fp32", fp32 > 1.0 && fp32 < 10.0 && fabs(int8 / fp32 - 1.0) < 0.01,
              "fp32 %.4f, int8 %.4f", fp32, int8);
    }

    // export.py's GGUF files of the Hugging Face and Meta checkpoints: f32 and f16 give the
    // published greedy story; q8_0 and q4_0 run, with perplexity close to f32's.
    struct { const char *id, *source, *type; double max_ppl_ratio; } exports[] = {
        {"cli-export-hf-f32-greedy", "--hf %s/stories260K-hf", "f32", 0.0},
        {"cli-export-meta-f32-greedy", "--meta-llama %s/stories260K-meta", "f32", 0.0},
        {"cli-export-hf-f16-greedy", "--hf %s/stories260K-hf", "f16", 0.0},
        {"cli-export-meta-f16-greedy", "--meta-llama %s/stories260K-meta", "f16", 0.0},
        {"cli-export-hf-q8_0-ppl", "--hf %s/stories260K-hf", "q8_0", 1.01},  // measured +0.44%
        {"cli-export-hf-q4_0-ppl", "--hf %s/stories260K-hf", "q4_0", 1.06},  // measured +0.1% (126 tokens: noisy)
    };
    for (size_t i = 0; i < sizeof(exports) / sizeof(exports[0]); i++) {
        if (!wanted(exports[i].id)) continue;
        char source[2048], cmd[4096];
        snprintf(source, sizeof(source), exports[i].source, models_dir);
        snprintf(cmd, sizeof(cmd), "%s export.py %s %s --type %s 2>/dev/null",
                 getenv("PYTHON") ? getenv("PYTHON") : "/usr/bin/python3", tmp_path("export.gguf"), source,
                 exports[i].type);
        int exported = system(cmd) == 0;
        if (!exported) {
            check(exports[i].id, 0, "export.py %s --type %s failed", source, exports[i].type);
        } else if (exports[i].max_ppl_ratio == 0.0) {
            check_cli_case(&(CliCase){exports[i].id, "$T/export.gguf -t 0 -n 200", 0, .out = greedy_story_200});
        } else {
            double p = cli_perplexity("$T/export.gguf -m ppl -n 128 < tests/story.txt");
            check(exports[i].id, p > 1.0 && p / fp32 < exports[i].max_ppl_ratio,
                  "perplexity %.4f against fp32 %.4f", p, fp32);
        }
    }
    remove(tmp_path("export.gguf"));
}
#undef STORIES

// ----------------------------------------------------------------------------
// Hostile input: files cut short, mutated or random, bad tokenizers, bad flags,
// odd text, a closed pipe. Each must end with one line on stderr and status
// 1 (2 for the command line), or run normally; never crash, hang or print
// garbage. make test-sanitize runs this under ASan and UBSan.

// Runs args on a file; returns 1 if it either succeeded or was refused with one line.
static int survives(const char *args, int *refused) {
    RunResult r = run_cmd(args);
    int ok = (r.status == 0) || (r.status == 1 && r.err_lines == 1 && r.out_len == 0);
    *refused += r.status == 1;
    if (!ok) printf("     %s: status %d, %d stderr lines: %.300s\n", args, r.status, r.err_lines, r.err ? r.err : "");
    free_run(&r);
    return ok;
}

// The test's own reading of llama2.c's tokenizer.bin: int32 max_token_length, then
// per piece float32 score, int32 length, the text. Returns why these bytes are not a
// tokenizer for a model of n_vocab tokens, or NULL if they are one.
static const char *tokenizer_fault(const unsigned char *d, size_t len, int n_vocab) {
    if (len < 4) return "no header";
    int32_t max_len;
    memcpy(&max_len, d, 4);
    int n = 0;
    for (size_t off = 4; off < len; n++) {
        uint32_t piece_len;
        float score;
        if (len - off < 8) return "an entry cut short";
        memcpy(&score, d + off, 4), memcpy(&piece_len, d + off + 4, 4);
        if (piece_len > len - off - 8) return "a piece past the end of the file";
        if ((int64_t)piece_len > max_len) return "a piece longer than max_token_length";
        if (!isfinite(score)) return "a score that is not finite";
        off += 8 + piece_len;
    }
    return n != n_vocab ? "the wrong number of pieces" : NULL;
}

// Kinds of broken tokenizer file, and the words the refusal must contain (NULL:
// it depends on where the walk through the file goes wrong).
static const struct { const char *name, *needle; } tokenizer_breaks[] = {
    {"cut short", NULL},
    {"a length past the end", "left in the file"},
    {"a length changed", NULL},
    {"max_token_length below the longest piece", "max_token_length"},
    {"a score NaN or infinite", "expected a finite number"},
    {"pieces missing or added", "tokens but"},
};

// Writes into out (room for len + 3 * (8 + longest) bytes) a copy of the tokenizer whole, broken
// in the given way at a random place; returns its length. entry[i] is where
// piece i starts (entry[n] = len), longest the longest piece.
static size_t break_tokenizer(int kind, const unsigned char *whole, size_t len, const size_t *entry, int n, int longest,
                              uint64_t *rng, unsigned char *out) {
    memcpy(out, whole, len);
    int at = random_u32(rng) % n;
    unsigned char *e = out + entry[at];
    uint32_t u;
    switch (kind) {
    case 0: return random_u32(rng) % len; // any length short of the whole file
    case 1: // more text than the bytes left
        u = (uint32_t)(len - entry[at] - 8 + 1 + random_u32(rng) % 1000);
        memcpy(e + 4, &u, 4);
        return len;
    case 2: { // another length no longer than the header allows: the walk goes out of step
        uint32_t old;
        memcpy(&old, e + 4, 4);
        u = random_u32(rng) % (longest + 1);
        if (u == old) u = (u + 1) % (longest + 1);
        memcpy(e + 4, &u, 4);
        return len;
    }
    case 3: { // a header smaller than the longest piece
        int32_t small[] = {longest - 1, longest / 2, 0, -1, INT32_MIN};
        memcpy(out, &small[random_u32(rng) % 5], 4);
        return len;
    }
    case 4: { // NaN (quiet, signalling, negative) or an infinity
        uint32_t bits[] = {0x7FC00000, 0x7F800001, 0xFFC00000, 0x7F800000, 0xFF800000};
        memcpy(e, &bits[random_u32(rng) % 5], 4);
        return len;
    }
    default: { // 1 to 3 pieces taken out, or copies of one added at the end
        int k = 1 + random_u32(rng) % 3;
        if (random_u32(rng) % 2) {
            if (at > n - k) at = n - k;
            memmove(out + entry[at], whole + entry[at + k], len - entry[at + k]);
            return len - (entry[at + k] - entry[at]);
        }
        size_t m = len, piece = entry[at + 1] - entry[at];
        for (int i = 0; i < k; i++, m += piece) memcpy(out + m, whole + entry[at], piece);
        return m;
    }
    }
}

// Where the tensor table entry of `name` keeps its type (the offset follows, 4 bytes on) in
// a GGUF file's bytes, or NULL: after the name's length and text, its dimension count and extents.
static char *tensor_type_field(char *gguf, size_t len, const char *name) {
    char needle[256];
    uint64_t n = strlen(name);
    memcpy(needle, &n, 8), memcpy(needle + 8, name, n);
    char *at = find_in(gguf, len, needle, 8 + n);
    if (!at) return NULL;
    uint32_t n_dims;
    memcpy(&n_dims, at + 8 + n, 4);
    return at + 8 + n + 4 + 8 * (size_t)n_dims;
}

// Tensors whose bytes overlap: refused, naming both, rather than computing garbage.
static void test_overlapping_tensors(void) {
    size_t len = 0;
    char *gguf = read_file_text(model_path("stories260K.gguf"), &len);
    char *up = gguf ? tensor_type_field(gguf, len, "blk.0.ffn_up.weight") : NULL;
    char *gate = gguf ? tensor_type_field(gguf, len, "blk.0.ffn_gate.weight") : NULL;
    if (up && gate) memcpy(up + 4, gate + 4, 8); // ffn_up's offset := ffn_gate's
    if (gguf) write_file(tmp_path("same-offset.gguf"), gguf, len);
    free(gguf);
    gguf = read_file_text(model_path("llama-2-tiny-random.gguf"), &len);
    char *q = gguf ? tensor_type_field(gguf, len, "blk.0.attn_q.weight") : NULL;
    uint32_t f32 = 0; // from F16: twice the bytes, over attn_k's
    if (q) memcpy(q, &f32, 4);
    if (gguf) write_file(tmp_path("larger-type.gguf"), gguf, len);
    free(gguf);
    check("hostile-overlap-files-made", up && gate && q, "tensor table entries not found");
    const CliCase cases[] = {
        {"hostile-overlap-same-offset-refused", "$T/same-offset.gguf -n 8", 1,
         .err = "tensors blk.0.ffn_gate.weight (bytes"},
        {"hostile-overlap-larger-type-refused", "$T/larger-type.gguf -n 8", 1,
         .err = "tensors blk.0.attn_q.weight (bytes 512000 to 512256 of the tensor data) and blk.0.attn_k.weight"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) check_cli_case(&cases[i]);
    remove(tmp_path("same-offset.gguf")), remove(tmp_path("larger-type.gguf"));
}

// A file cut short while mapped (-l map): its lost pages raise SIGBUS when
// read, which must end the run with one line, not a bus error. The chat waits
// for its first turn on stdin while the shell empties the file.
static void test_file_cut_while_mapped(void) {
    const char *id = "hostile-mapped-file-cut-short";
    if (!wanted(id) || skipped_under_wine(id, "Windows refuses to cut short a file that is mapped")) return;
    size_t len = 0;
    char *gguf = read_file_text(model_path("stories260K.gguf"), &len);
    if (gguf) write_file(tmp_path("cut.gguf"), gguf, len);
    free(gguf);
    char prefix[4096], args[2048];
    snprintf(prefix, sizeof(prefix), "(sleep 1; : > %s; echo Hello) | %s", tmp_path("cut.gguf"),
             getenv("RUN_BINARY") ? getenv("RUN_BINARY") : "./run");
    snprintf(args, sizeof(args), "%s -l map -m chat -n 64", tmp_path("cut.gguf"));
    RunResult r = run_program(prefix, args);
    const char *wrong = refusal_wrong(&r, 1, "changed while mapped");
    check(id, gguf && r.status == 1 && !wrong, "%s: status %d, stdout '%.200s', stderr '%.300s'",
          wrong ? wrong : "", r.status, r.out ? r.out : "", r.err ? r.err : "");
    free_run(&r);
    remove(tmp_path("cut.gguf"));
}

// Limits that leave nothing to do are errors, said in one line: a chat whose
// first turn cannot start its reply, and perplexity of a text too short to score.
static void test_nothing_to_do(void) {
    const CliCase cases[] = {
        {"hostile-chat-first-turn-too-long-refused", "$M/stories260K.bin -z $M/tok512.bin -m chat -n 8 -i \"Once upon a time\"",
         1, .err = "the first turn needs"},
        {"hostile-ppl-text-of-one-token-refused", "$M/stories260K.bin -z $M/tok512.bin -m ppl -i \"\"", 1,
         .err = "the text is 1 token; perplexity needs 3 or more"},
        {"hostile-ppl-text-shorter-than-window-says-the-largest-n", "$M/stories260K.bin -z $M/tok512.bin -m ppl -n 64 -i \"Once upon a time\"",
         1, .err = "give -n 5 or less"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) check_cli_case(&cases[i]);
}

static void test_hostile(void) {
    test_overlapping_tensors();
    test_file_cut_while_mapped();
    test_nothing_to_do();
    char args[4096], tok512[1024], m260[1024];
    snprintf(tok512, sizeof(tok512), "%s", model_path("tok512.bin"));
    snprintf(m260, sizeof(m260), "%s", model_path("stories260K.bin"));
    char file[1024];
    snprintf(file, sizeof(file), "%s", tmp_path("hostile.bin"));
    uint64_t rng = 2024;

    // Checkpoints of every layout, cut at many lengths.
    const char *models[] = {"stories260K.bin", "stories260K_q80_gs4.bin", "stories260K.gguf", "llama-2-tiny-random.gguf"};
    for (size_t k = 0; k < sizeof(models) / sizeof(models[0]); k++) {
        size_t len = 0;
        char *whole = read_file_text(model_path(models[k]), &len);
        size_t cuts[] = {0, 1, 4, 27, 28, 37, 255, 256, 257, 1000, 4096, 20000, len / 2, len - 4, len - 1};
        int all = 1, refused = 0;
        snprintf(args, sizeof(args), "%s -z %s -n 4", file, strstr(models[k], "gguf") ? "tokenizer.bin" : tok512);
        if (strstr(models[k], "gguf")) snprintf(args, sizeof(args), "%s -n 4", file);
        for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) write_file(file, whole, cuts[i]), all &= survives(args, &refused);
        char id[128];
        snprintf(id, sizeof(id), "hostile-truncated-%s", models[k]);
        check(id, all && refused == (int)(sizeof(cuts) / sizeof(cuts[0])), "%d of %zu refused", refused,
              sizeof(cuts) / sizeof(cuts[0]));

        // Random bytes over the header and the first tensor infos: 120 mutants each.
        all = 1, refused = 0;
        char *mutant = malloc(len);
        size_t region = len < 4096 ? len : 4096;
        for (int i = 0; i < 120; i++) {
            memcpy(mutant, whole, len);
            int n_flips = 1 + random_u32(&rng) % 4;
            for (int f = 0; f < n_flips; f++) {
                size_t at = random_u32(&rng) % region;
                unsigned char v = (unsigned char)random_u32(&rng);
                if (i % 3 == 0) v = i % 2 ? 0xFF : 0x00; // extremes: 0 and all ones
                mutant[at] = (char)v;
            }
            write_file(file, mutant, len);
            all &= survives(args, &refused);
        }
        snprintf(id, sizeof(id), "hostile-mutated-%s", models[k]);
        check(id, all, "%d of 120 refused, some crashed or misbehaved (above)", refused);
        free(mutant), free(whole);
    }

    // Each header field of the legacy file set to extremes: all refused.
    size_t len = 0;
    char *whole = read_file_text(m260, &len);
    int32_t extremes[] = {0, -1, 1, 3, INT32_MAX, INT32_MIN, 1 << 20, 65537};
    int all = 1, refused = 0, tried = 0;
    for (int field = 0; field < 7; field++)
        for (size_t e = 0; e < sizeof(extremes) / sizeof(extremes[0]); e++) {
            int32_t original;
            memcpy(&original, whole + 4 * field, 4);
            if (extremes[e] == original || (field == 5 && extremes[e] == -original)) continue;
            memcpy(whole + 4 * field, &extremes[e], 4);
            write_file(file, whole, len);
            snprintf(args, sizeof(args), "%s -z %s -n 4", file, tok512);
            all &= survives(args, &refused), tried++;
            memcpy(whole + 4 * field, &original, 4);
        }
    check("hostile-header-fields", all && refused == tried, "%d of %d refused", refused, tried);
    free(whole);

    // Random files of assorted sizes, with and without each magic number.
    all = 1, refused = 0;
    for (int i = 0; i < 40; i++) {
        size_t n = 1 + random_u32(&rng) % 5000;
        unsigned char *bytes = malloc(n + 8);
        for (size_t j = 0; j < n; j++) bytes[j] = (unsigned char)random_u32(&rng);
        if (i % 4 == 1 && n >= 4) memcpy(bytes, "GGUF", 4);
        if (i % 4 == 2 && n >= 4) memcpy(bytes, "\x32\x34\x6b\x61", 4); // "ak42" as little-endian uint32
        write_file(file, bytes, n);
        snprintf(args, sizeof(args), "%s -z %s -n 4", file, tok512);
        all &= survives(args, &refused);
        free(bytes);
    }
    check("hostile-random-files", all && refused == 40, "%d of 40 refused", refused);

    // Tokenizer files broken in every way tokenizer_fault knows, 10 of each kind:
    // each one refused with one line naming the file, nothing on stdout, status 1.
    whole = read_file_text(tok512, &len);
    const unsigned char *tok = (const unsigned char *)whole;
    size_t entry[513];
    int n_entries = 0, longest = 0;
    for (size_t off = 4; off < len && n_entries < 512; n_entries++) {
        uint32_t piece_len;
        memcpy(&piece_len, tok + off + 4, 4);
        entry[n_entries] = off, off += 8 + piece_len;
        if ((int)piece_len > longest) longest = (int)piece_len;
    }
    entry[n_entries] = len;
    unsigned char *broken = malloc(len + 3 * (8 + (size_t)longest));
    int n_files = 0, n_unbroken = 0;
    refused = 0;
    for (int i = 0; i < 60; i++) {
        int kind = i % 6;
        size_t n = 0;
        const char *fault = NULL;
        for (int tries = 0; !fault && tries < 100; tries++) // a change may, rarely, leave a valid file
            n = break_tokenizer(kind, tok, len, entry, n_entries, longest, &rng, broken),
            fault = tokenizer_fault(broken, n, n_entries);
        if (!fault) { n_unbroken++; continue; }
        write_file(file, broken, n), n_files++;
        snprintf(args, sizeof(args), "%s -z %s -n 8 -i \"Lily and Tom\"", m260, file);
        RunResult r = run_cmd(args);
        const char *needle = tokenizer_breaks[kind].needle;
        int ok = r.status == 1 && r.err_lines == 1 && r.out_len == 0 && strstr(r.err, file) &&
                 (!needle || strstr(r.err, needle));
        refused += ok;
        if (!ok)
            printf("     tokenizer with %s (%s): status %d, %zu bytes on stdout, %d stderr lines: %.*s\n",
                   tokenizer_breaks[kind].name, fault, r.status, r.out_len, r.err_lines,
                   r.err ? (int)strcspn(r.err, "\n") : 0, r.err ? r.err : "");
        free_run(&r);
    }
    check("hostile-tokenizer-files", n_entries == 512 && n_unbroken == 0 && refused == n_files && n_files == 60,
          "%d of %d broken files refused; %d could not be broken", refused, n_files, n_unbroken);
    free(broken), free(whole);
    remove(file);

    // Text: invalid UTF-8 and control bytes in the prompt, an empty prompt, a closed stdin.
    static const char hostile_text[] = "Lily \xff\xfe and \xe4\xbd Tom\x01\x1b[31m went";
    write_file(tmp_path("hostile-text.txt"), hostile_text, sizeof(hostile_text) - 1);
    snprintf(args, sizeof(args), "%s -z %s -t 0 -n 40 -i - < %s", m260, tok512, tmp_path("hostile-text.txt"));
    RunResult r = run_cmd(args);
    int valid = r.out != NULL;
    for (size_t i = 0; valid && i < r.out_len;) {
        int cl = utf8_char_len((const unsigned char *)r.out + i, r.out_len - i);
        valid = cl > 0 && !((unsigned char)r.out[i] < 0x20 && !strchr("\t\n\r", r.out[i]));
        i += cl ? cl : 1;
    }
    check("hostile-invalid-utf8-prompt", r.status == 0 && valid, "status %d, output valid UTF-8 without controls: %d",
          r.status, valid);
    free_run(&r);
    remove(tmp_path("hostile-text.txt"));
    snprintf(args, sizeof(args), "%s -z %s -t 0 -n 20 -i \"\"", m260, tok512);
    r = run_cmd(args);
    check("hostile-empty-prompt", r.status == 0 && r.out && strncmp(r.out, "Once upon a time", 16) == 0, NULL);
    free_run(&r);
    if (!skipped_under_wine("hostile-closed-stdin", closed_stdin_on_wine)) {
        snprintf(args, sizeof(args), "%s -z %s -t 0 -n 20 <&-", m260, tok512);
        r = run_cmd(args);
        check("hostile-closed-stdin", r.status == 0 && r.out && strncmp(r.out, "Once upon a time", 16) == 0, "status %d",
              r.status);
        free_run(&r);
    }

    // A closed pipe: the run stops quietly with status 0, whether the parent ignores SIGPIPE or not.
    const char *binary = getenv("RUN_BINARY") ? getenv("RUN_BINARY") : "./run";
    char cmd[4096];
    for (int ignore = 0; ignore < 2; ignore++) {
        // The producer runs in a subshell that records its status: a pipeline's status is the consumer's.
        snprintf(cmd, sizeof(cmd), "sh -c '%s (%s %s -z %s -n 512 2>%s; echo $? > %s) "
                 "| head -c 20 > /dev/null'; exit $(cat %s)",
                 ignore ? "trap \"\" PIPE;" : "", binary, m260, tok512, tmp_path("pipe.err"), tmp_path("pipe.status"),
                 tmp_path("pipe.status"));
        int status = system(cmd);
        status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        size_t err_len = 0;
        char *err = read_file_text(tmp_path("pipe.err"), &err_len);
        char id[64];
        snprintf(id, sizeof(id), ignore ? "hostile-closed-pipe-sigpipe-ignored" : "hostile-closed-pipe");
        // 141 would be death by SIGPIPE (128 + 13); run ignores it, sees EPIPE and stops
        check(id, status == 0 && (!err || !strstr(err, "rror")), "status %d, stderr %s", status, err);
        free(err);
    }
    remove(tmp_path("pipe.status")), remove(tmp_path("pipe.err"));

    // Inputs that once crashed a fuzz harness (tests/fuzz-regressions/, see its README).
    const char *harnesses[] = {"checkpoint", "gguf", "tokenizer"};
    int replayed = 0;
    all = 1, refused = 0;
    for (int h = 0; h < 3; h++) {
        char dir[256];
        snprintf(dir, sizeof(dir), "tests/fuzz-regressions/%s", harnesses[h]);
        DIR *d = opendir(dir);
        for (struct dirent *e; d && (e = readdir(d));) {
            if (e->d_name[0] == '.') continue;
            char path[1024];
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
            snprintf(args, sizeof(args), "%s -z %s -n 4", path, tok512);
            if (h == 1) { // as fuzz_gguf reads it: with the GGUF magic forced
                size_t n = 0;
                char *input = read_file_text(path, &n);
                if (n >= 4) memcpy(input, "GGUF", 4);
                write_file(file, input, n);
                snprintf(args, sizeof(args), "%s -n 4", file);
                free(input);
            }
            if (h == 2) { // as fuzz_tokenizer reads it: a leading 0 byte marks a tokenizer file, 1 text for
                          // Llama 3's tokenizer, 2 a GGUF vocabulary, else text for Llama 2's
                size_t n = 0;
                char *input = read_file_text(path, &n);
                if (n > 0 && (input[0] == 0 || input[0] == 2)) {
                    write_file(file, input + 1, n - 1);
                    snprintf(args, sizeof(args), "-m tokenize -z %s -i \"Once upon a time\"", file);
                } else if (n > 0 && input[0] == 1) {
                    write_file(file, input + 1, n - 1);
                    snprintf(args, sizeof(args), "-m tokenize -z %s/llama3/llama3-vocab.gguf < %s", models_dir, file);
                } else {
                    snprintf(args, sizeof(args), "-m tokenize -z tokenizer.bin < %s", path);
                }
                free(input);
            }
            all &= survives(args, &refused), replayed++;
        }
        if (d) closedir(d);
    }
    check("hostile-fuzz-regressions", all, "%d inputs replayed", replayed);
    remove(file);

    // Flags: every malformed value is a usage error.
    const char *bad[] = {"-t \"\"", "-n \"\"", "-s -1", "-k -1", "-p nan", "-t inf", "-t 1e99", "-r -1", "--stop \"\"",
                         "-i", "-z", "-n 99999999999", "-e 2", "-l", "--stop", "-x 1", "-tt 1", "--temperature 1"};
    all = 1;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(args, sizeof(args), "%s -z %s %s", m260, tok512, bad[i]);
        RunResult b = run_cmd(args);
        if (!(b.status == 2 && b.out_len == 0 && b.err && strncmp(b.err, "run: ", 5) == 0))
            printf("     flag %s: status %d\n", bad[i], b.status), all = 0;
        free_run(&b);
    }
    check("hostile-flags", all, NULL);
}

// ----------------------------------------------------------------------------
// Check ids name the behaviour they check; their first word or two (the prefix) names the area.

// Runs export.py with args ($M and $T expanded as for ./run); status, stdout and stderr.
static RunResult run_export(const char *args) {
    char expanded[8192], program[1024];
    expand_args(expanded, sizeof(expanded), args);
    snprintf(program, sizeof(program), "%s export.py", getenv("PYTHON") ? getenv("PYTHON") : "/usr/bin/python3");
    return run_program(program, expanded);
}

// Whether the file at path holds exactly the bytes of the file at original.
static int same_file_bytes(const char *path, const char *original) {
    size_t a_len = 0, b_len = 0;
    char *a = read_file_text(path, &a_len), *b = read_file_text(original, &b_len);
    int same = a && b && a_len == b_len && memcmp(a, b, a_len) == 0;
    free(a), free(b);
    return same;
}

// export.py refuses, before anything is written, an output that is an input, whatever the
// path's spelling (./, a hard link); an output that is a folder; and a context that run
// would refuse.
static void test_export_refusals(void) {
    size_t len = 0;
    char *bytes = read_file_text(model_path("tok512.model"), &len);
    write_file(tmp_path("tok.model"), bytes, len);
    free(bytes);
    bytes = read_file_text(model_path("stories260K.bin"), &len);
    write_file(tmp_path("x.bin"), bytes, len);
    free(bytes);
    char link_path[1024];
    snprintf(link_path, sizeof(link_path), "%s", tmp_path("x-link.bin"));
    remove(link_path);
    int linked = link(tmp_path("x.bin"), link_path) == 0;
    struct { const char *id, *args, *file, *original; } cases[] = {
        {"export-refuses-tokenizer-onto-itself", "$T/./tok.model --tokenizer $T/tok.model", "tok.model", "tok512.model"},
        {"export-refuses-gguf-onto-checkpoint", "$T/x-link.bin --llama2c $T/x.bin --tokenizer $M/tok512.model", "x.bin",
         "stories260K.bin"},
        {"export-refuses-gguf-onto-tokenizer", "$T/tok.model --llama2c $M/stories260K.bin --tokenizer $T/tok.model",
         "tok.model", "tok512.model"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        RunResult r = run_export(cases[i].args);
        int intact = same_file_bytes(tmp_path(cases[i].file), model_path(cases[i].original));
        check(cases[i].id, linked && r.status == 1 && intact && r.err && strstr(r.err, "is the input") && r.err_lines == 1,
              "status %d, input intact %d, stderr %s", r.status, intact, r.err ? r.err : "");
        free_run(&r);
    }
    remove(tmp_path("tok.model")), remove(tmp_path("x.bin")), remove(link_path);

    struct { const char *id, *args, *needle; } exports[] = {
        {"export-refuses-context-over-run-limit", "$T/c.gguf --llama2c $M/stories260K.bin --tokenizer $M/tok512.model "
         "--context 4194305", "expected 1..4194304"},
        {"export-refuses-output-folder", "$T --llama2c $M/stories260K.bin --tokenizer $M/tok512.model", "is a folder"},
        {"export-refuses-tokenizer-output-folder", "$T --tokenizer $M/tok512.model", "is a folder"},
    };
    for (size_t i = 0; i < sizeof(exports) / sizeof(exports[0]); i++) {
        if (!wanted(exports[i].id)) continue;
        RunResult r = run_export(exports[i].args);
        check(exports[i].id, r.status != 0 && r.err && strstr(r.err, exports[i].needle) && !file_exists(tmp_path("c.gguf")),
              "status %d, stderr %s", r.status, r.err ? r.err : "");
        free_run(&r);
    }
}

// $T/s260.gguf: stories260K with its own tok512.model, as export.py writes it (once);
// several tests use it. Whether it is there.
static int export_s260(void) {
    static int status = -1;
    if (status < 0) {
        RunResult r = run_export("$T/s260.gguf --llama2c $M/stories260K.bin --tokenizer $M/tok512.model");
        status = r.status;
        if (status != 0) printf("     export.py: status %d, %s", r.status, r.err ? r.err : "");
        free_run(&r);
    }
    return status == 0;
}

// SentencePiece's normalizer flags travel in the GGUF and are honoured. stories260K
// exported with its tok512.model (remove_extra_whitespaces on) against SentencePiece's own
// ids for tok512 (tests/tokenizer_cases_tok512.tsv, by make references); tokenizer.bin,
// which cannot say, gets Llama 2's rule, as docs/formats.md says.
static void test_tokenizer_flags(void) {
    check("tokenizer-flags-export", export_s260(), "export.py failed");
    Model m;
    build_model(&m, tmp_path("s260.gguf"), WEIGHTS_MAP, 16, 1, KV_AUTO);
    Tokenizer t;
    tokenizer_from_gguf(&t, m.vocab, "s260.gguf");
    check("tokenizer-flags-read", t.remove_extra_whitespaces == 1 && t.add_dummy_prefix == 1 && t.add_bos == 1,
          "remove_extra_whitespaces %d, add_dummy_prefix %d, add_bos %d", t.remove_extra_whitespaces,
          t.add_dummy_prefix, t.add_bos);
    tokenizer_cases_in(&t, "tokenizer-flags-tok512-gguf", "tests/tokenizer_cases_tok512.tsv", 512);
    free_tokenizer(&t);
    free_model(&m);

    // Perplexity: a text with every space doubled scores as the text itself, since the
    // doubled spaces normalize away (before: 6.30 against 3.34).
    size_t len = 0;
    char *story = read_file_text("tests/story.txt", &len), *doubled = malloc(2 * len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        doubled[n++] = story[i];
        if (story[i] == ' ') doubled[n++] = ' ';
    }
    write_file(tmp_path("story-doubled.txt"), doubled, n);
    free(story), free(doubled);
    double single = cli_perplexity("$T/s260.gguf -m ppl < tests/story.txt");
    double twice = cli_perplexity("$T/s260.gguf -m ppl < $T/story-doubled.txt");
    check("tokenizer-flags-ppl-double-space", single > 1.0 && single == twice, "perplexity %.4f, doubled spaces %.4f", single,
          twice);
    remove(tmp_path("story-doubled.txt"));

    // add_bos_token false: no <s> in front. The export's bool, patched in place.
    char *gguf = read_file_text(tmp_path("s260.gguf"), &len);
    const char *key = "tokenizer.ggml.add_bos_token"; // then uint32 type 7 (bool), one byte
    char *at = gguf ? find_in(gguf, len, key, strlen(key)) : NULL;
    if (at) at[strlen(key) + 4] = 0, write_file(tmp_path("s260-nobos.gguf"), gguf, len);
    free(gguf);
    const CliCase cases[] = {
        {"tokenizer-flags-tokenize-double-space", "$T/s260.gguf -m tokenize -i \"Once  upon a time\"", 0,
         .out = "1 403 407 261 378\n"},
        {"tokenizer-flags-tokenize-spaces-around", "$T/s260.gguf -m tokenize -i \"  Once upon  \"", 0, .out = "1 403 407\n"},
        {"tokenizer-flags-add-bos-false", "$T/s260-nobos.gguf -m tokenize -i \"Once  upon a time\"", 0,
         .out = "403 407 261 378\n"},
        {"tokenizer-flags-add-bos-false-generates", "$T/s260-nobos.gguf -t 0 -n 20 -i \"\"", 0, .out_start = "Once upon a time"},
        {"tokenizer-flags-tokenizer-bin-keeps-llama2-rule", "-m tokenize -z $M/tok512.bin -i \"Once  upon a time\"", 0,
         .out = "1 403 410 407 261 378\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) check_cli_case(&cases[i]);
    remove(tmp_path("s260-nobos.gguf"));
}

// A tiny positive temperature is greedy in effect, never NaN; one below float's smallest
// normal number is accepted.
static void test_sampler_tiny_temperature(void) {
    Sampler s;
    build_sampler(&s, 4, 3e-38f, 0.9f, 0, 7);
    int all_max = 1;
    for (int i = 0; i < 50; i++) {
        float logits[4] = {1.0f, 30.0f, 2.0f, -5.0f};
        all_max &= sample(&s, logits) == 1 && !isnan(logits[0]);
    }
    check("sampler-tiny-temperature-is-greedy", all_max, NULL);
    free_sampler(&s);
}

static void test_cli_tiny_temperature(void) {
    const CliCase cases[] = {
        {"cli-temperature-3e-38", "$M/stories260K.bin -z $M/tok512.bin -t 3e-38 -n 200", 0, .out = greedy_story_200},
        {"cli-temperature-1e-40", "$M/stories260K.bin -z $M/tok512.bin -t 1e-40 -n 200", 0, .out = greedy_story_200},
        {"cli-temperature-1e-50", "$M/stories260K.bin -z $M/tok512.bin -t 1e-50 -n 200", 0, .out = greedy_story_200},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) check_cli_case(&cases[i]);
}

// Perplexity by llama-perplexity's rule. Windows of -n, whole ones only, each
// scoring its second half: tests/story.txt is 368 tokens, so -n 64 scores 5 windows of
// 31 tokens and -n 100 3 of 49 (llama.cpp's count: chunks * (n_ctx - 1 - n_ctx / 2)).
// A context of 1 position (which never ended before) is refused, as is a text shorter
// than one window. The NLL itself: perplexity-window-* against NumPy.
static const char *scored_155(const RunResult *r) { return strstr(r->out, "over 155 tokens") ? NULL : "not 155 tokens"; }
static const char *scored_147(const RunResult *r) { return strstr(r->out, "over 147 tokens") ? NULL : "not 147 tokens"; }

static void test_perplexity_windows(void) {
    export_s260();
    size_t len = 0;
    char *gguf = read_file_text(tmp_path("s260.gguf"), &len);
    const char *key = "llama.context_length"; // then uint32 type 4, the uint32 value
    char *at = gguf ? find_in(gguf, len, key, strlen(key)) : NULL;
    uint32_t one = 1;
    if (at) memcpy(at + strlen(key) + 4, &one, 4), write_file(tmp_path("s260-ctx1.gguf"), gguf, len);
    free(gguf);
    const CliCase cases[] = {
        {"perplexity-context-1-refused", "$T/s260-ctx1.gguf -m ppl -n 0 < tests/story.txt", 1, .err = "score nothing"},
        {"perplexity-windows-of-2-refused", "$M/stories260K.bin -z $M/tok512.bin -m ppl -n 2 < tests/story.txt", 1,
         .err = "windows of 2 positions"},
        {"perplexity-text-shorter-than-window-refused", "$M/stories260K.bin -z $M/tok512.bin -m ppl -n 512 < tests/story.txt", 1,
         .err = "shorter than one perplexity window of 512"},
        {"perplexity-windows-of-64", "$M/stories260K.bin -z $M/tok512.bin -m ppl -n 64 < tests/story.txt", 0,
         .out_start = "perplexity ", .also = scored_155},
        {"perplexity-windows-of-100", "$M/stories260K.bin -z $M/tok512.bin -m ppl -n 100 < tests/story.txt", 0,
         .out_start = "perplexity ", .also = scored_147},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) check_cli_case(&cases[i]);
    remove(tmp_path("s260-ctx1.gguf"));

    // The figure holds against llama.cpp's: llama-perplexity -c 128 on tests/story.txt for each
    // of llama.cpp's quantizations in models/stories260K-wide/ (references.json, "ppl_c128"),
    // within 2% (measured: 1.2% at most, from the int8 rounding of the activations).
    char *refs = read_file_text(model_path("stories260K-wide/references.json"), NULL);
    for (size_t i = 0; i < sizeof(wide1_files) / sizeof(wide1_files[0]); i++) {
        char id[128], name[128], args[512];
        snprintf(id, sizeof(id), "perplexity-like-llama-cpp-%s", wide1_files[i]);
        if (!wanted(id)) continue;
        snprintf(name, sizeof(name), "\"wide1-%s.gguf\"", wide1_files[i]);
        const char *entry = refs ? strstr(refs, name) : NULL, *at = entry ? strstr(entry, "\"ppl_c128\":") : NULL;
        double want = at ? atof(at + strlen("\"ppl_c128\":")) : 0.0;
        snprintf(args, sizeof(args), "$M/stories260K-wide/wide1-%s.gguf -m ppl -n 128 < tests/story.txt", wide1_files[i]);
        double got = cli_perplexity(args);
        check(id, want > 1.0 && fabs(got / want - 1.0) < 0.02, "run %.4f, llama-perplexity %.4f", got, want);
    }
    free(refs);
}

// GGUF files that contradict themselves or ask for what is not implemented.
// The files are the export $T/s260.gguf edited: extra key/value pairs go in right after
// the 24-byte header, padded by one more string pair to a multiple of 32 bytes so that
// the tensor data stays aligned; a key or tensor name may first be renamed in place.
typedef struct {
    unsigned char bytes[1024];
    size_t len;
    int n;
} KVs;

static void kv_key(KVs *kv, const char *key, uint32_t type) {
    uint64_t len = strlen(key);
    memcpy(kv->bytes + kv->len, &len, 8), memcpy(kv->bytes + kv->len + 8, key, len);
    memcpy(kv->bytes + kv->len + 8 + len, &type, 4);
    kv->len += 12 + len, kv->n++;
}
static void kv_string(KVs *kv, const char *key, const char *value) {
    kv_key(kv, key, 8);
    uint64_t len = strlen(value);
    memcpy(kv->bytes + kv->len, &len, 8), memcpy(kv->bytes + kv->len + 8, value, len);
    kv->len += 8 + len;
}
static void kv_scalar(KVs *kv, const char *key, uint32_t type, const void *value, size_t size) {
    kv_key(kv, key, type);
    memcpy(kv->bytes + kv->len, value, size);
    kv->len += size;
}

// Writes $T/name: s260.gguf with `from` renamed to `to` (the same length) where it first
// appears, and the pairs of kv added. Returns whether it could.
static int edited_gguf(const char *name, const char *from, const char *to, KVs kv) {
    size_t len = 0;
    char *whole = read_file_text(tmp_path("s260.gguf"), &len);
    if (!whole) return 0;
    char *at = from ? find_in(whole, len, from, strlen(from)) : NULL;
    if (from && (!at || strlen(to) != strlen(from))) return free(whole), 0;
    if (at) memcpy(at, to, strlen(to));
    size_t pad = (32 - (kv.len + 28) % 32) % 32; // the padding pair: 28 bytes with key "test.pad", then its value
    char value[40] = "";
    memset(value, 'x', pad), value[pad] = '\0';
    kv_string(&kv, "test.pad", value);
    uint64_t n_kv;
    memcpy(&n_kv, whole + 16, 8), n_kv += kv.n, memcpy(whole + 16, &n_kv, 8);
    FILE *f = fopen(tmp_path(name), "wb");
    fwrite(whole, 1, 24, f), fwrite(kv.bytes, 1, kv.len, f), fwrite(whole + 24, 1, len - 24, f);
    fclose(f);
    free(whole);
    return kv.len % 32 == 0;
}

// A tensor with 3 dimensions where 2 are expected (the export with a third extent of 1 on
// blk.0.attn_q.weight, 8 bytes more, and a 24-byte key/value pair so that the header grows
// by 32 and the data stays aligned); and a GGUF whose embedding is huge is not asked
// whether it is a llama2.c checkpoint. Whether both files were written.
static int gguf_dims_and_embedding_files(void) {
    size_t len = 0;
    char *whole = read_file_text(tmp_path("s260.gguf"), &len);
    const char *name = "blk.0.attn_q.weight", *embd = "token_embd.weight";
    char *at = whole ? find_in(whole, len, name, strlen(name)) : NULL;
    int made = at != NULL;
    if (at) {
        size_t dims_end = (size_t)(at - whole) + strlen(name) + 4 + 16; // n_dims, then two extents
        uint32_t three = 3, u32_type = 4, zero = 0;
        uint64_t one = 1, n_kv, key_len = 8;
        memcpy(at + strlen(name), &three, 4);
        memcpy(&n_kv, whole + 16, 8), n_kv++, memcpy(whole + 16, &n_kv, 8);
        FILE *f = fopen(tmp_path("dims3.gguf"), "wb");
        fwrite(whole, 1, 24, f);
        fwrite(&key_len, 8, 1, f), fwrite("test.pad", 1, 8, f), fwrite(&u32_type, 4, 1, f), fwrite(&zero, 4, 1, f);
        fwrite(whole + 24, 1, dims_end - 24, f), fwrite(&one, 8, 1, f), fwrite(whole + dims_end, 1, len - dims_end, f);
        fclose(f);
        memcpy(at + strlen(name), (uint32_t[]){2}, 4), memcpy(&n_kv, whole + 16, 8), n_kv--, memcpy(whole + 16, &n_kv, 8);
    }
    at = whole ? find_in(whole, len, embd, strlen(embd)) : NULL;
    made &= at != NULL;
    if (at) { // its second extent, the vocabulary: 2^23 rows
        uint64_t rows = 1ull << 23;
        memcpy(at + strlen(embd) + 4 + 8, &rows, 8);
        write_file(tmp_path("huge-embd.gguf"), whole, len);
    }
    free(whole);
    return made;
}

static void test_gguf_refusals(void) {
    export_s260();
    KVs none = {{0}, 0, 0}, kv;
    int made = edited_gguf("dup-tensor.gguf", "blk.0.attn_k.weight", "blk.0.attn_q.weight", none);
    uint32_t u32 = 5;
    kv = none, kv_scalar(&kv, "llama.block_count", 4, &u32, 4);
    made &= edited_gguf("dup-key.gguf", NULL, NULL, kv);
    uint64_t bos = (1ull << 32) + 1, huge = (1ull << 63) + 5;
    kv = none, kv_scalar(&kv, "tokenizer.ggml.bos_token_id", 10, &bos, 8);
    made &= edited_gguf("bos-2p32.gguf", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.xos_token_id", kv);
    kv = none, kv_scalar(&kv, "tokenizer.ggml.bos_token_id", 10, &huge, 8);
    made &= edited_gguf("bos-huge.gguf", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.xos_token_id", kv);
    int64_t minus4 = -4, wraps = (1ll << 32) + 4;
    kv = none, kv_scalar(&kv, "llama.attention.head_count_kv", 11, &minus4, 8);
    made &= edited_gguf("kv-heads-negative.gguf", "llama.attention.head_count_kv", "llama.attention.head_count_xx", kv);
    kv = none, kv_scalar(&kv, "llama.attention.head_count_kv", 11, &wraps, 8);
    made &= edited_gguf("kv-heads-wraps.gguf", "llama.attention.head_count_kv", "llama.attention.head_count_xx", kv);
    made &= gguf_dims_and_embedding_files();
    check("gguf-files-made", made, "could not edit $T/s260.gguf");

    const CliCase cases[] = {
        {"gguf-duplicate-tensor-refused", "$T/dup-tensor.gguf -n 8", 1, .err = "tensor blk.0.attn_q.weight appears twice"},
        {"gguf-duplicate-key-refused", "$T/dup-key.gguf -n 8", 1, .err = "key llama.block_count appears twice"},
        {"gguf-bos-u64-2p32-plus-1-refused", "$T/bos-2p32.gguf -n 8", 1, .err = "bos_token_id is 4294967297"},
        {"gguf-bos-u64-above-int64-refused", "$T/bos-huge.gguf -n 8", 1, .err = "is 9223372036854775813, out of range"},
        {"gguf-head-count-kv-negative-refused", "$T/kv-heads-negative.gguf -n 8", 1, .err = "head_count_kv is -4"},
        {"gguf-head-count-kv-i64-refused", "$T/kv-heads-wraps.gguf -n 8", 1, .err = "head_count_kv is 4294967300"},
        {"gguf-tensor-dimensions-named", "$T/dims3.gguf -n 8", 1,
         .err = "tensor blk.0.attn_q.weight has 3 dimensions, expected 2"},
        {"gguf-huge-embedding-not-llama2c", "$T/huge-embd.gguf -n 8", 1,
         .err = "tensor token_embd.weight has 8388608 rows (the vocabulary), expected 1..4194304"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) check_cli_case(&cases[i]);
    const char *made_files[] = {"dup-tensor.gguf", "dup-key.gguf", "bos-2p32.gguf", "bos-huge.gguf",
                                "kv-heads-negative.gguf", "kv-heads-wraps.gguf", "dims3.gguf", "huge-embd.gguf"};
    for (size_t i = 0; i < sizeof(made_files) / sizeof(made_files[0]); i++) remove(tmp_path(made_files[i]));
}

// RoPE scaling from the GGUF's keys: linear only; a factor with type none is a contradiction.
static void test_rope_scaling(void) {
    export_s260();
    KVs none = {{0}, 0, 0}, kv;
    float two = 2.0f, four = 4.0f;
    kv = none, kv_string(&kv, "llama.rope.scaling.type", "linear"), kv_scalar(&kv, "llama.rope.scaling.factor", 6, &two, 4);
    int made = edited_gguf("rope-linear.gguf", NULL, NULL, kv);
    kv = none, kv_string(&kv, "llama.rope.scaling.type", "yarn"), kv_scalar(&kv, "llama.rope.scaling.factor", 6, &four, 4);
    made &= edited_gguf("rope-yarn.gguf", NULL, NULL, kv);
    kv = none, kv_string(&kv, "llama.rope.scaling.type", "none"), kv_scalar(&kv, "llama.rope.scaling.factor", 6, &four, 4);
    made &= edited_gguf("rope-none-factor.gguf", NULL, NULL, kv);
    check("rope-scaling-files-made", made, "could not edit $T/s260.gguf");

    const CliCase cases[] = {
        {"rope-scaling-yarn-refused", "$T/rope-yarn.gguf -n 8", 1, .err = "linear RoPE scaling only"},
        {"rope-scaling-none-with-factor-refused", "$T/rope-none-factor.gguf -n 8", 1, .err = "scaling.factor is 4"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) check_cli_case(&cases[i]);
    // Linear scaling: position p turns as p / 2 does unscaled, and the text changes.
    if (wanted("rope-scaling-linear-tables")) {
        Model plain, scaled;
        build_model(&plain, tmp_path("s260.gguf"), WEIGHTS_MAP, 64, 1, KV_AUTO);
        build_model(&scaled, tmp_path("rope-linear.gguf"), WEIGHTS_MAP, 64, 1, KV_AUTO);
        int half = plain.config.head_size / 2, same = scaled.config.rope_scale == 2.0f, moved = 0;
        for (int p = 0; p < 64; p += 2)
            for (int i = 0; i < half; i++) {
                same &= fabsf(scaled.state.rope_cos[p * half + i] - plain.state.rope_cos[p / 2 * half + i]) < 1e-6f &&
                        fabsf(scaled.state.rope_sin[p * half + i] - plain.state.rope_sin[p / 2 * half + i]) < 1e-6f;
                moved |= scaled.state.rope_cos[p * half + i] != plain.state.rope_cos[p * half + i];
            }
        check("rope-scaling-linear-tables", same && moved, "scale %g; tables at 2p equal unscaled at p: %d", 
              scaled.config.rope_scale, same);
        free_model(&plain), free_model(&scaled);
    }
    if (wanted("rope-scaling-linear-runs")) {
        RunResult a = run_args("$T/s260.gguf -t 0 -n 60"), b = run_args("$T/rope-linear.gguf -t 0 -n 60");
        check("rope-scaling-linear-runs", a.status == 0 && b.status == 0 && a.out && b.out && strcmp(a.out, b.out) != 0,
              "status %d and %d; the scaled file's text is %s", a.status, b.status,
              a.out && b.out && strcmp(a.out, b.out) == 0 ? "the same" : "other");
        free_run(&a), free_run(&b);
    }
    remove(tmp_path("rope-linear.gguf")), remove(tmp_path("rope-yarn.gguf")), remove(tmp_path("rope-none-factor.gguf"));
}

static const char *at_most_4_lines(const RunResult *r) {
    if (r->err_lines > 4) return "more than 4 lines on stderr";
    return strstr(r->err, "run -h") ? NULL : "stderr does not point at run -h";
}

static const char *says_prompt_5(const RunResult *r) { return strstr(r->err, "prompt 5 tokens") ? NULL : "not 5 prompt tokens"; }

// A reader that leaves early is not an error, pipefail or not, SIGPIPE ignored by the
// parent or not; and the run stops rather than computing its 2000 tokens for no one.
// A bad flag is the error and a pointer to -h, at most 4 lines; -h is the manual. The
// stats line counts the prompt that -n let through; RUN_KERNELS= is as unset.
static void test_cli_pipe_and_flags(void) {
    if (could_match("cli-pipefail-")) {
        const char *binary = getenv("RUN_BINARY") ? getenv("RUN_BINARY") : "./run";
        for (int ignore = 0; ignore < 2; ignore++) {
            char cmd[4096], id[64];
            snprintf(cmd, sizeof(cmd), "bash -c '%s set -o pipefail; %s %s -z %s -n 2000 2>%s | head -c 5 >/dev/null'",
                     ignore ? "trap \"\" PIPE;" : "", binary, model_path("stories260K.bin"), model_path("tok512.bin"),
                     tmp_path("pipe.err"));
            double start = seconds_now();
            int status = system(cmd);
            double seconds = seconds_now() - start;
            status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
            size_t err_len = 0;
            char *err = read_file_text(tmp_path("pipe.err"), &err_len);
            snprintf(id, sizeof(id), "cli-pipefail-status-0%s", ignore ? "-sigpipe-ignored" : "");
            // stderr: at most the timings line, never an error
            check(id, status == 0 && (!err || !strstr(err, "rror")), "status %d after %.2f s, stderr %s", status, seconds,
                  err ? err : "");
            free(err);
        }
        remove(tmp_path("pipe.err"));
    }
    const CliCase cases[] = {
        {"cli-flag-unknown-points-at-help", "$M/stories260K.bin -q 1", 2, .err = "unknown option '-q'", .also = at_most_4_lines},
        {"cli-flag-bad-value-points-at-help", "$M/stories260K.bin -t hot", 2, .err = "-t wants", .also = at_most_4_lines},
        {"cli-help-is-the-manual", "-h", 0, .out_start = "Usage:", .also = lists_every_option},
        {"cli-stats-count-the-prompt-fed", "$M/stories260K.bin -z $M/tok512.bin -t 0 -n 5 -i \"Once upon a time there was a girl\"",
         0, .also = says_prompt_5},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) check_cli_case(&cases[i]);
    if (wanted("cli-run-kernels-empty-is-unset")) {
        char cmd[4096];
        snprintf(cmd, sizeof(cmd), "RUN_KERNELS= %s %s -t 0 -n 200 > %s 2>/dev/null",
                 getenv("RUN_BINARY") ? getenv("RUN_BINARY") : "./run", model_path("stories260K.gguf"), tmp_path("k.out"));
        int status = system(cmd);
        char *out = read_file_text(tmp_path("k.out"), NULL);
        check("cli-run-kernels-empty-is-unset", status == 0 && out && strcmp(out, greedy_story_200) == 0,
              "status %d", status);
        free(out), remove(tmp_path("k.out"));
    }
}

// -i - with a closed stdin is an empty prompt; in chat, -i - takes the
// turns from stdin one per line. One trailing \n or \r\n is dropped, a lone \r stays
// (ids from SentencePiece: "Hello\r" is 1 15043 30004, "Hello" 1 15043).
static void test_cli_stdin_edges(void) {
    write_file(tmp_path("hello-cr.txt"), "Hello\r", 6);
    write_file(tmp_path("hello-crlf.txt"), "Hello\r\n", 7);
    write_file(tmp_path("hello-cr-crlf.txt"), "Hello\r\r\n", 8);
    const CliCase cases[] = {
        {"cli-prompt-dash-closed-stdin-is-empty", "$M/stories260K.bin -z $M/tok512.bin -t 0 -n 20 -i - <&-", 0,
         .out_start = "Once upon a time", .not_on_windows = closed_stdin_on_wine},
        {"cli-prompt-dash-closed-stdin-tokenize", "-m tokenize -z tokenizer.bin -i - <&-", 0, .out = "1\n",
         .not_on_windows = closed_stdin_on_wine},
        {"cli-chat-dash-turns-per-line", "$M/stories260K.bin -z $M/tok512.bin -m chat -t 0 -n 400 -i - < tests/chat_turns.txt",
         0, .also = two_replies},
        {"cli-stdin-lone-cr-kept", "-m tokenize -z tokenizer.bin < $T/hello-cr.txt", 0, .out = "1 15043 30004\n"},
        {"cli-stdin-crlf-dropped", "-m tokenize -z tokenizer.bin < $T/hello-crlf.txt", 0, .out = "1 15043\n"},
        {"cli-stdin-cr-before-crlf-kept", "-m tokenize -z tokenizer.bin < $T/hello-cr-crlf.txt", 0,
         .out = "1 15043 30004\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) check_cli_case(&cases[i]);
    remove(tmp_path("hello-cr.txt")), remove(tmp_path("hello-crlf.txt")), remove(tmp_path("hello-cr-crlf.txt"));
}

// -z takes a GGUF file's vocabulary (a model's, or a vocabulary-only file: here
// the export with its tensor count set to 0, so that only its keys are read), and names
// a SentencePiece .model instead of misreading it as tokenizer.bin.
static void test_cli_z_formats(void) {
    export_s260();
    size_t len = 0;
    char *gguf = read_file_text(tmp_path("s260.gguf"), &len);
    if (gguf && len > 24) memset(gguf + 8, 0, 8), write_file(tmp_path("vocab-only.gguf"), gguf, len);
    free(gguf);
    const CliCase cases[] = {
        {"cli-z-gguf-tokenize", "-m tokenize -z $M/llama-2-tiny-random.gguf -i \"Hello world\"", 0,
         .out = "1 15043 3186\n"},
        {"cli-z-vocab-only-gguf", "-m tokenize -z $T/vocab-only.gguf -i \"Once  upon a time\"", 0,
         .out = "1 403 407 261 378\n"},
        {"cli-z-gguf-with-model", "$M/stories260K.bin -z $T/vocab-only.gguf -t 0 -n 200", 0, .out = greedy_story_200},
        {"cli-z-sentencepiece-model", "-m tokenize -z $M/tok512.model -i x", 1,
         .err = "is a SentencePiece model, not a tokenizer.bin: convert it with python3 export.py OUT.bin --tokenizer"},
        {"cli-z-gguf-vocab-mismatch", "$M/stories260K.bin -z $M/llama-2-tiny-random.gguf -n 8", 1,
         .err = "has 32000 tokens but"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) check_cli_case(&cases[i]);
    remove(tmp_path("vocab-only.gguf"));
}

// Vocabularies the other cases do not cover, against SentencePiece on edited
// tok512 models (tests/make_vocab_cases.py, by make references): user-defined pieces
// matched whole; no byte fallback, a run of unknown characters one <unk>, which prints
// as SentencePiece decodes it; and a GGUF without token types still has its byte pieces.
static void vocab_case(const char *prefix, const char *model, const char *cases_file, int bytes) {
    char args[512];
    snprintf(args, sizeof(args), "$T/vocab.gguf --llama2c $M/stories260K.bin --tokenizer %s", model);
    RunResult r = run_export(args);
    char id[128];
    snprintf(id, sizeof(id), "%s-export", prefix);
    check(id, r.status == 0, "export.py: status %d, %s", r.status, r.err ? r.err : "");
    free_run(&r);
    Model m;
    build_model(&m, tmp_path("vocab.gguf"), WEIGHTS_MAP, 16, 1, KV_AUTO);
    Tokenizer t;
    tokenizer_from_gguf(&t, m.vocab, "vocab.gguf");
    tokenizer_cases_bytes(&t, prefix, cases_file, 512, bytes, 13);
    free_tokenizer(&t), free_model(&m);
    remove(tmp_path("vocab.gguf"));
}

static void test_tokenizer_vocabularies(void) {
    if (could_match("tokenizer-vocab-user-defined"))
        vocab_case("tokenizer-vocab-user-defined", "tests/tok512_userdef.model", "tests/tokenizer_cases_userdef.tsv", 1);
    if (could_match("tokenizer-vocab-no-byte-fallback"))
        vocab_case("tokenizer-vocab-no-byte-fallback", "tests/tok512_nobyte.model", "tests/tokenizer_cases_nobyte.tsv", 0);
    if (could_match("tokenizer-vocab-no-token-type")) { // Meta's vocabulary with its types' key renamed away
        size_t len = 0;
        char *gguf = read_file_text(model_path("llama-2-tiny-random.gguf"), &len);
        const char *key = "tokenizer.ggml.token_type";
        char *at = gguf ? find_in(gguf, len, key, strlen(key)) : NULL;
        if (at) at[strlen(key) - 1] = 'x', write_file(tmp_path("no-types.gguf"), gguf, len);
        free(gguf);
        Model m;
        build_model(&m, tmp_path("no-types.gguf"), WEIGHTS_MAP, 16, 1, KV_AUTO);
        Tokenizer t;
        tokenizer_from_gguf(&t, m.vocab, "no-types.gguf");
        check("tokenizer-vocab-no-token-type-read", at && m.vocab->type == NULL, NULL);
        tokenizer_cases(&t, "tokenizer-vocab-no-token-type");
        free_tokenizer(&t), free_model(&m);
        check_cli_case(&(CliCase){"tokenizer-vocab-no-token-type-emoji", "$T/no-types.gguf -m tokenize -i \"Hi 🦙\"", 0,
                                  .out = "1 6324 29871 243 162 169 156\n"});
        remove(tmp_path("no-types.gguf"));
    }
    if (wanted("tokenizer-vocab-unk-prints-as-sentencepiece")) { // Meta's tokenizer: " ⁇ " (SentencePiece's decode of 0)
        Tokenizer t;
        build_tokenizer(&t, "tokenizer.bin");
        int ids[] = {1, 15043, 0, 3186}, first[] = {1, 0, 15043};
        size_t a_len, b_len;
        char *a = print_ids(&t, ids, 4, &a_len), *b = print_ids(&t, first, 3, &b_len);
        check("tokenizer-vocab-unk-prints-as-sentencepiece", strcmp(a, "Hello \xE2\x81\x87  world") == 0 &&
              strcmp(b, " \xE2\x81\x87  Hello") == 0, "printed '%s' and '%s'", a, b);
        free(a), free(b), free_tokenizer(&t);
    }
}

// Chat turns are stripped as Python's str.strip() strips them, and a NUL byte is
// text. Held to SentencePiece and Meta's rule by the chat-template-python-whitespace and
// chat-template-nul-in-turn dialogs (tests/make_chat_cases.py); here, the same through chat().
static void test_chat_turns(void) {
    Tokenizer t;
    build_tokenizer(&t, "tokenizer.bin");
    const char *spaced[] = {"\xc2\xa0\x1cHello\xc2\x85\xe3\x80\x80"}, *plain[] = {"Hello"};
    int n_a, n_b;
    int *a = encode_dialog(&t, CHAT_LLAMA2, "", NULL, spaced, NULL, 1, &n_a);
    int *b = encode_dialog(&t, CHAT_LLAMA2, "", NULL, plain, NULL, 1, &n_b);
    check("chat-turn-strip-python-whitespace", n_a == n_b && memcmp(a, b, n_a * sizeof(int)) == 0, "%d ids, %d without",
          n_a, n_b);
    free(a), free(b), free_tokenizer(&t);
    // A chat whose one turn holds a NUL: the model sees the bytes after it too, so the
    // conversation is longer than with the turn cut at the NUL.
    char *out_nul, *out_cut;
    static const char turn_nul[] = "Tell me\0 a story about a cat.\n", turn_cut[] = "Tell me\n";
    Model m;
    Tokenizer tok;
    Sampler s;
    ChatStats st[2];
    for (int k = 0; k < 2; k++) {
        build_model(&m, model_path("stories260K.bin"), WEIGHTS_READ, 200, PROMPT_BLOCK, KV_AUTO);
        build_tokenizer(&tok, model_path("tok512.bin"));
        build_sampler(&s, m.config.vocab_size, 0.0f, 0.9f, 0, 1);
        ChatOptions o = {NULL, NULL, 1, {NULL, 0}, 0, CHAT_LLAMA2, ""};
        FILE *in = k ? fmemopen((void *)turn_cut, sizeof(turn_cut) - 1, "r") : fmemopen((void *)turn_nul, sizeof(turn_nul) - 1, "r");
        size_t len;
        FILE *out = memory_stream(k ? &out_cut : &out_nul, &len);
        st[k] = chat(&m, &tok, &s, &o, in, out);
        fclose(in), close_memory_stream(out);
        free_sampler(&s), free_tokenizer(&tok), free_model(&m);
    }
    // "[INST] Tell me [/INST]" and one reply token, against the same with "\0 a story about a cat."
    check("chat-turn-nul-does-not-cut-it", st[0].turns == 1 && st[1].turns == 1 && st[0].positions > st[1].positions + 5,
          "positions %d with the NUL, %d cut there", st[0].positions, st[1].positions);
    free(out_nul), free(out_cut);
}

// ----------------------------------------------------------------------------
// Byte-level BPE vocabularies that lie: each is refused with one line naming the fault

// GPT-2's printable stand-in for byte b, as UTF-8, into out; returns its length.
static int bytelevel_char(int b, char *out) {
    int k = 0x100;
    for (int c = 0; c < b; c++) k += !byte_is_printable(c);
    uint32_t cp = byte_is_printable(b) ? (uint32_t)b : (uint32_t)k;
    if (cp < 0x80) return out[0] = (char)cp, 1;
    out[0] = (char)(0xC0 | cp >> 6), out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

// A growing GGUF file in memory.
typedef struct {
    char *bytes;
    size_t len, cap;
} Buffer;
static void put(Buffer *b, const void *p, size_t n) {
    if (n == 0) return; // p may be NULL then (an empty list)
    if (b->len + n > b->cap) b->bytes = realloc(b->bytes, b->cap = 2 * (b->len + n));
    memcpy(b->bytes + b->len, p, n), b->len += n;
}
static void put_u32(Buffer *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(Buffer *b, uint64_t v) { put(b, &v, 8); }
static void put_str(Buffer *b, const char *s, size_t n) { put_u64(b, n), put(b, s, n); }
static void put_key(Buffer *b, const char *key, uint32_t type) { put_str(b, key, strlen(key)), put_u32(b, type); }

// Writes $T/name: a vocabulary-only GGUF of byte-level BPE: the 256 byte tokens, then
// `extra` (texts separated by '\n'), then filler tokens up to n_tokens (0: none);
// merges separated by '\n' (NULL: no key, "": an empty list); pre NULL: no key.
static void write_bpe_vocab(const char *name, const char *extra, int n_tokens, const char *merges, const char *pre,
                            int drop_byte) {
    Buffer toks = {0}, types = {0}, mer = {0};
    int n = 0, n_merges = 0;
    char text[64];
    for (int b = 0; b < 256; b++) {
        int len = bytelevel_char(b == drop_byte ? 'a' : b, text); // a repeat of 'a' instead: byte drop_byte has no token
        put_str(&toks, text, len), put_u32(&types, 1), n++;
    }
    for (const char *p = extra; p && *p; n++) {
        size_t len = strcspn(p, "\n");
        put_str(&toks, p, len), put_u32(&types, p[0] == '<' ? 3 : 1);
        p += len + (p[len] == '\n');
    }
    for (; n < n_tokens; n++) {
        int len = snprintf(text, sizeof(text), "filler%d", n);
        put_str(&toks, text, len), put_u32(&types, 1);
    }
    for (const char *p = merges; p && *p; n_merges++) {
        size_t len = strcspn(p, "\n");
        put_str(&mer, p, len);
        p += len + (p[len] == '\n');
    }
    Buffer f = {0};
    put(&f, "GGUF", 4), put_u32(&f, 3), put_u64(&f, 0), put_u64(&f, 4 + (merges != NULL) + (pre != NULL));
    put_key(&f, "general.architecture", 8), put_str(&f, "llama", 5);
    put_key(&f, "tokenizer.ggml.model", 8), put_str(&f, "gpt2", 4);
    if (pre) put_key(&f, "tokenizer.ggml.pre", 8), put_str(&f, pre, strlen(pre));
    put_key(&f, "tokenizer.ggml.tokens", 9), put_u32(&f, 8), put_u64(&f, n), put(&f, toks.bytes, toks.len);
    put_key(&f, "tokenizer.ggml.token_type", 9), put_u32(&f, 5), put_u64(&f, n), put(&f, types.bytes, types.len);
    if (merges) put_key(&f, "tokenizer.ggml.merges", 9), put_u32(&f, 8), put_u64(&f, n_merges), put(&f, mer.bytes, mer.len);
    write_file(tmp_path(name), f.bytes, f.len);
    free(toks.bytes), free(types.bytes), free(mer.bytes), free(f.bytes);
}

static const char *warns_no_pre(const RunResult *r) {
    return r->err && strstr(r->err, "no tokenizer.ggml.pre") && r->err_lines == 1 ? NULL : "no one-line warning";
}

static void test_bpe_hostile(void) {
    // "Ġt" and "he": " the" is " t" "he" by the merges, whatever the rules say about words.
    const char *words = "\xC4\xA0t\nhe", *rules = "\xC4\xA0 t\nh e";
    write_bpe_vocab("bpe-good.gguf", words, 0, rules, "llama-bpe", -1);
    write_bpe_vocab("bpe-unknown-merge.gguf", words, 0, "\xC4\xA0 t\nq x", "llama-bpe", -1);
    write_bpe_vocab("bpe-merge-no-space.gguf", words, 0, "\xC4\xA0t", "llama-bpe", -1);
    write_bpe_vocab("bpe-merge-makes-unknown.gguf", words, 0, "h e\nt h", "llama-bpe", -1);
    write_bpe_vocab("bpe-empty-merges.gguf", words, 0, "", "llama-bpe", -1);
    write_bpe_vocab("bpe-no-merges.gguf", words, 0, NULL, "llama-bpe", -1);
    write_bpe_vocab("bpe-unknown-pre.gguf", words, 0, rules, "qwen2", -1);
    write_bpe_vocab("bpe-no-pre.gguf", words, 0, rules, NULL, -1);
    write_bpe_vocab("bpe-missing-byte.gguf", words, 0, rules, "llama-bpe", 0x41);
    write_bpe_vocab("bpe-300000.gguf", words, 300000, rules, "llama-bpe", -1);
    // Llama 3's vocabulary without a pre key (converted before llama.cpp recorded it): <|begin_of_text|> at 128000.
    Buffer extra = {0};
    put(&extra, words, strlen(words));
    for (int i = 258; i < 128000; i++) {
        char filler[32];
        put(&extra, filler, snprintf(filler, sizeof(filler), "\nfiller%d", i));
    }
    put(&extra, "\n<|begin_of_text|>\n", 20);
    write_bpe_vocab("bpe-llama3-no-pre.gguf", extra.bytes, 128256, rules, NULL, -1);
    free(extra.bytes);

    const CliCase cases[] = {
        {"hostile-bpe-good-vocabulary", "-m tokenize -z $T/bpe-good.gguf -i ' the'", 0, .out = "256 257\n"},
        {"hostile-bpe-merge-names-unknown-token", "-m tokenize -z $T/bpe-unknown-merge.gguf -i x", 1,
         .err = "BPE merge 1 'q x' names or makes a token that is not in the vocabulary"},
        {"hostile-bpe-merge-without-space", "-m tokenize -z $T/bpe-merge-no-space.gguf -i x", 1,
         .err = "is not two tokens separated by a space"},
        {"hostile-bpe-merge-makes-unknown-token", "-m tokenize -z $T/bpe-merge-makes-unknown.gguf -i x", 1,
         .err = "BPE merge 1 't h' names or makes a token that is not in the vocabulary"},
        {"hostile-bpe-empty-merges", "-m tokenize -z $T/bpe-empty-merges.gguf -i x", 1, .err = "has no merges"},
        {"hostile-bpe-no-merges", "-m tokenize -z $T/bpe-no-merges.gguf -i x", 1, .err = "has no merges"},
        {"hostile-bpe-unknown-pre", "-m tokenize -z $T/bpe-unknown-pre.gguf -i x", 1,
         .err = "cuts text into words by the rule 'qwen2'; this program implements Llama 3's"},
        {"hostile-bpe-no-pre", "-m tokenize -z $T/bpe-no-pre.gguf -i x", 1, .err = "no tokenizer.ggml.pre"},
        {"hostile-bpe-missing-byte-token", "-m tokenize -z $T/bpe-missing-byte.gguf -i x", 1,
         .err = "has no token for the byte 0x41"},
        {"hostile-bpe-300000-tokens-for-512", "$M/stories260K.gguf -z $T/bpe-300000.gguf -n 8 -i x", 1,
         .err = "has 300000 tokens but"},
        {"hostile-bpe-300000-tokens-alone", "-m tokenize -z $T/bpe-300000.gguf -i ' the'", 0, .out = "256 257\n"},
        {"hostile-bpe-llama3-without-pre-warns", "-m tokenize -z $T/bpe-llama3-no-pre.gguf -i ' the'", 0,
         .out = "256 257\n", .also = warns_no_pre}, // no bos_token_id in this file: no <s>
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) check_cli_case(&cases[i]);
}

// ----------------------------------------------------------------------------
// A Llama 3.2-shaped model: grouped-query attention, a tied embedding (quantized in
// the Q8_0 export), rope_freqs and Llama 3's 128,256 tokens. tests/make_llama3_model.py
// makes it at test time with random weights as a Hugging Face folder, export.py turns it
// into GGUF, and tests/reference_llama3.py (NumPy, float64, reading the Hugging Face
// weights) wrote the logits and greedy ids it must give.

// The prompt ids and the 16 greedy ids after them, from a logits file's lines.
static int read_greedy(const char *file, int *tokens, int *n_tokens, int *greedy) {
    FILE *f = fopen(file, "rb");
    char *line = NULL;
    Text row = {0};
    int n_greedy = 0;
    *n_tokens = 0;
    while (f && (line = next_line(f, &row))) {
        char *p;
        if (strncmp(line, "tokens ", 7) == 0) {
            int n = (int)strtol(line + 7, &p, 10);
            for (int i = 0; i < n && i < 64; i++) tokens[(*n_tokens)++] = (int)strtol(p, &p, 10);
        } else if (strncmp(line, "# greedy 16: ", 13) == 0) {
            p = line + 13;
            for (int i = 0; i < 16; i++) greedy[n_greedy++] = (int)strtol(p, &p, 10);
        }
    }
    if (f) fclose(f);
    free(row.data);
    return n_greedy == 16 && *n_tokens > 0;
}

static void test_llama3_model(void) {
    char cmd[8192];
    const char *python = getenv("PYTHON") ? getenv("PYTHON") : "/usr/bin/python3";
    snprintf(cmd, sizeof(cmd), "%s tests/make_llama3_model.py %s %s > /dev/null && %s export.py %s --hf %s > /dev/null 2>&1"
             " && %s export.py %s --hf %s --type q8_0 > /dev/null 2>&1", python, tmp_path("llama3-hf"), models_dir,
             python, tmp_path("llama3-f32.gguf"), tmp_path("llama3-hf"), python, tmp_path("llama3-q8_0.gguf"),
             tmp_path("llama3-hf"));
    int made = system(cmd) == 0;
    check("llama3-model-made", made, "%s", cmd);
    if (!made) return;
    // F32 within 1e-4 of the float64 reference; Q8_0's weights are the reference's too, but run
    // quantizes each matrix's input to int8 in blocks of 32, which moves these logits (up to 15)
    // by at most 0.26 in a simulation of that rounding (reference_llama3.py --report).
    const struct { const char *type; float allowed; KVCache kv; } exports[] = {{"f32", 1e-4f, KV_F32}, {"q8_0", 0.5f, KV_AUTO}};
    for (size_t e = 0; e < sizeof(exports) / sizeof(exports[0]); e++) {
        char gguf[64], expected[64], id[128];
        snprintf(gguf, sizeof(gguf), "llama3-%s.gguf", exports[e].type);
        snprintf(expected, sizeof(expected), "tests/logits_llama3_%s.txt", exports[e].type);
        Model m;
        build_model(&m, tmp_path(gguf), WEIGHTS_READ, 64, 1, exports[e].kv);
        int n;
        float err = max_logit_error(&m, expected, &n);
        snprintf(id, sizeof(id), "llama3-model-%s-logits", exports[e].type);
        check(id, err <= exports[e].allowed, "max |logit - reference| = %g over %d logits (%s)", err, n, expected);
        snprintf(id, sizeof(id), "llama3-model-%s-shape", exports[e].type);
        check(id, m.weights.rope_freqs && m.config.shared_classifier && m.config.n_kv_heads == 2 &&
              m.config.vocab_size == 128256 && m.config.rope_theta == 500000.0f && m.config.seq_len == 131072 &&
              m.weights.token_embedding.type == (e == 0 ? WEIGHT_F32 : WEIGHT_Q8_0), NULL);
        free_model(&m);

        // Greedy: the reference's 16 ids after the prompt.
        int tokens[64], n_tokens, greedy[16] = {0}, got[16] = {0};
        build_model(&m, tmp_path(gguf), WEIGHTS_READ, 64, PROMPT_BLOCK, exports[e].kv);
        int have = read_greedy(expected, tokens, &n_tokens, greedy), same = have;
        float *logits = feed_tokens(&m, tokens, n_tokens, 0);
        for (int i = 0; i < 16 && have; i++) {
            got[i] = argmax(logits, m.config.vocab_size);
            same &= got[i] == greedy[i];
            logits = forward(&m, &got[i], 1, n_tokens + i, LOGITS_LAST);
        }
        snprintf(id, sizeof(id), "llama3-model-%s-greedy-16", exports[e].type);
        check(id, same, "%s: first ids %d %d %d, the reference's %d %d %d", have ? "differs" : "no greedy line", got[0],
              got[1], got[2], greedy[0], greedy[1], greedy[2]);
        free_model(&m);
    }

    // The whole context is 131,072 positions; a session reserves only what it reaches.
    Model m;
    build_model(&m, tmp_path("llama3-q8_0.gguf"), WEIGHTS_MAP, 0, PROMPT_BLOCK, KV_AUTO);
    check("llama3-model-cache-starts-small", m.state.n_ctx == 131072 && m.state.cache_positions == KV_START_POSITIONS,
          "n_ctx %d, room for %d positions", m.state.n_ctx, m.state.cache_positions);
    free_model(&m);

    const CliCase cases[] = {
        // Chat in the format the file's template names (Llama 3.2's), on the model's own vocabulary.
        {"llama3-model-chat", "$T/llama3-q8_0.gguf -m chat -t 0 -r 8 -i 'Hello there' < /dev/null", 0, .also = plain_reply},
        {"llama3-model-chat-format-named", "$T/llama3-q8_0.gguf -m chat --chat-format chatml -t 0 -r 8 -i Hi < /dev/null", 0,
         .also = plain_reply},
        {"llama3-model-generate", "$T/llama3-q8_0.gguf -t 0 -n 24 -i 'Once upon a time'", 0, .out_start = "Once upon a time"},
        {"llama3-model-tokenize", "$T/llama3-q8_0.gguf -m tokenize -i 'Hello world'", 0, .out = "128000 9906 1917\n"},
        {"llama3-model-bad-chat-format", "$T/llama3-q8_0.gguf -m chat --chat-format llama4 -i Hi", 2,
         .err = "--chat-format wants llama2, llama3"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) check_cli_case(&cases[i]);
}

// ----------------------------------------------------------------------------
// The same ids through the command line: ./run -m tokenize, for llama.cpp's 46 llama-bpe
// cases on the Llama 3 vocabulary and the Llama 2 cases on tokenizer.bin. Each text goes in
// on stdin with "\r\n" after it, which run drops as the one line ending it drops.
static void tokenize_cli_cases(const char *prefix, const char *cases_file, const char *vocab, int min_cases) {
    FILE *f = fopen(cases_file, "rb");
    char *line = NULL, id[160], args[2048], text_file[1024];
    snprintf(text_file, sizeof(text_file), "%s", tmp_path("tokenize-cli.txt")); // tmp_path's buffer is reused
    Text row = {0};
    int n_cases = 0, failed = 0;
    while (f && (line = next_line(f, &row))) {
        if (line[0] == '#') continue;
        line[strcspn(line, "\n")] = '\0';
        char *name = strtok(line, "\t"), *in_hex = strtok(NULL, "\t"), *ids = strtok(NULL, "\t");
        if (!ids) ids = in_hex, in_hex = ""; // strtok skips an empty input field
        char *text = malloc(strlen(in_hex) / 2 + 3);
        size_t len = unhex(in_hex, text);
        memcpy(text + len, "\r\n", 2);
        write_file(text_file, text, len + 2);
        snprintf(args, sizeof(args), "-m tokenize -z %s -i - < %s", vocab, text_file);
        RunResult r = run_cmd(args);
        size_t want = strlen(ids);
        int same = r.status == 0 && r.out && r.out_len == want + 1 && memcmp(r.out, ids, want) == 0 && r.err[0] == '\0';
        snprintf(id, sizeof(id), "%s-%s", prefix, name);
        if (!same) check(id, 0, "status %d, stdout '%.60s'", r.status, r.out ? r.out : ""), failed++;
        free_run(&r), free(text);
        n_cases++;
    }
    if (f) fclose(f);
    free(row.data);
    snprintf(id, sizeof(id), "%s-all", prefix);
    check(id, f && n_cases >= min_cases && failed == 0, "%d of %d cases differ", failed, n_cases);
}

static void test_tokenize_cli(void) {
    char vocab[1024];
    snprintf(vocab, sizeof(vocab), "%s", model_path("llama3/llama3-vocab.gguf"));
    tokenize_cli_cases("tokenize-cli-llama-bpe", "tests/tokenizer_cases_llama_bpe.tsv", vocab, 46);
    tokenize_cli_cases("tokenize-cli-llama2", "tests/tokenizer_cases.tsv", "tokenizer.bin", 50);
}

// ----------------------------------------------------------------------------

// Where a test function's checks run: inside this binary (kernels, model, tokenizer, chat),
// through ./run as a program (and export.py, and the shell), or in Python alone. --in-process
// runs only the first kind, for make test-cross, whose emulated CPUs would otherwise re-run
// the host's ./run and Python tests for nothing, and for make test-windows, whose test_all.exe
// has no POSIX shell; --programs runs only the second, which make test-windows points at
// run.exe (RUN_BINARY).
// The README's "First run" and "In scripts" commands, as a newcomer types them
// on a clean clone (tests/readme_commands.sh runs each; it fails when it finds
// fewer than 3). They call ./run, so another build (RUN_BINARY) skips them.
static void test_readme_commands(void) {
    const char *id = "readme-first-run-and-scripts-run-as-written";
    if (!wanted(id)) return;
    if (getenv("RUN_BINARY")) {
        printf("SKIP %s: the README's commands run ./run, and RUN_BINARY names another build\n", id);
        n_skipped++;
        return;
    }
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "bash tests/readme_commands.sh > %s 2>&1", tmp_path("readme.out"));
    int status = system(cmd);
    size_t len = 0;
    char *out = read_file_text(tmp_path("readme.out"), &len);
    int commands = 0;
    for (char *line = out; line && *line;) {
        commands += strncmp(line, "ok ", 3) == 0 || strncmp(line, "FAIL", 4) == 0;
        char *next = strchr(line, '\n');
        line = next ? next + 1 : NULL;
    }
    check(id, status == 0 && commands >= 3, "status %d, %d commands: %.2000s", status, commands, out ? out : "");
    free(out);
}

// run.c's promise to a learner (README, "A tour of run.c"): forward ends
// before line 700, and nothing before it is SIMD code or GGUF block decoding.
static void test_lesson(void) {
    size_t len = 0;
    char *text = read_file_text("run.c", &len);
    int line = 1, forward_at = 0, forward_end = 0, simd_at = 0;
    for (char *p = text; p && *p && !forward_end; line++) {
        char *next = strchr(p, '\n');
        size_t n = next ? (size_t)(next - p) : strlen(p);
        const char *needles[] = {"_mm", "__m", "vld1", "immintrin", "arm_neon", "decode_block", "decode_values"};
        for (size_t i = 0; i < sizeof(needles) / sizeof(needles[0]) && !simd_at; i++)
            if (find_in(p, n, needles[i], strlen(needles[i]))) simd_at = line;
        if (!forward_at && strncmp(p, "static float *forward(", 22) == 0) forward_at = line;
        if (forward_at && n >= 1 && p[0] == '}') forward_end = line;
        p = next ? next + 1 : NULL;
    }
    check("lesson-forward-ends-before-line-700", forward_end > 0 && forward_end < 700, "forward ends at line %d",
          forward_end);
    check("lesson-no-simd-or-block-decoding-before-forward", forward_end > 0 && simd_at == 0,
          "line %d of run.c, before forward's end", simd_at);
    free(text);
}

typedef enum { IN_PROCESS, PROGRAM, PYTHON_ONLY } TestKind;

// Every test function, in the order they run, with the prefix all its check ids start with
// (one area's prefix may head several functions: cli-, perplexity-).
static const struct {
    void (*run)(void);
    const char *prefix;
    int needs_models;
    TestKind kind;
} tests[] = {
    {test_lesson, "lesson-", 0, IN_PROCESS},
    {test_tokenizer_cases, "tokenizer-", 0, IN_PROCESS},
    {test_printer, "printer-", 0, IN_PROCESS},
    {test_sampler, "sampler-", 0, IN_PROCESS},
    {test_kernels, "kernels-", 0, IN_PROCESS},
    {test_attention_groups, "kernels-attention-", 0, IN_PROCESS},
    {test_export, "export-", 1, PYTHON_ONLY},
    {test_forward, "forward-", 1, IN_PROCESS},
    {test_tokenizer_gguf, "tokenizer-gguf-", 1, IN_PROCESS},
    {test_tokenizer_bpe, "tokenizer-bpe-", 1, IN_PROCESS},
    {test_chat_template, "chat-template-", 1, IN_PROCESS},
    {test_chat_formats, "chat-format-", 1, IN_PROCESS},
    {test_chat, "chat-", 1, IN_PROCESS},
    {test_perplexity, "perplexity-", 1, IN_PROCESS},
    {test_generate, "generate-", 1, IN_PROCESS},
    {test_cli, "cli-", 1, PROGRAM},
    {test_tokenize_cli, "tokenize-cli-", 1, PROGRAM},
    {test_hostile, "hostile-", 1, PROGRAM},
    {test_bpe_hostile, "hostile-bpe-", 1, PROGRAM},
    {test_llama3_model, "llama3-model-", 1, PROGRAM},
    {test_readme_commands, "readme-", 1, PROGRAM},
    {test_export_refusals, "export-refuses-", 1, PROGRAM},
    {test_tokenizer_flags, "tokenizer-flags-", 1, PROGRAM},
    {test_tokenizer_vocabularies, "tokenizer-vocab-", 1, PROGRAM},
    {test_sampler_tiny_temperature, "sampler-tiny-temperature-", 0, PROGRAM},
    {test_cli_tiny_temperature, "cli-temperature-", 1, PROGRAM},
    {test_perplexity_windows, "perplexity-", 1, PROGRAM},
    {test_gguf_refusals, "gguf-", 1, PROGRAM},
    {test_rope_scaling, "rope-scaling-", 1, PROGRAM},
    {test_cli_pipe_and_flags, "cli-", 1, PROGRAM},
    {test_cli_stdin_edges, "cli-", 1, PROGRAM},
    {test_cli_z_formats, "cli-z-", 1, PROGRAM},
    {test_chat_turns, "chat-turn-", 1, PROGRAM},
};

int main(int argc, char **argv) {
    int in_process = 0, programs = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--in-process") == 0) {
            in_process = 1;
        } else if (strcmp(argv[i], "--programs") == 0) {
            programs = 1;
        } else if (argv[i][0] == '-' || only) {
            fprintf(stderr, "usage: %s [--in-process | --programs] [PREFIX]: PREFIX runs only the checks whose id "
                    "starts with it\n", argv[0]);
            return 2;
        } else {
            only = argv[i];
        }
    }
    if (in_process && programs) {
        fprintf(stderr, "%s: --in-process and --programs select disjoint checks: give one\n", argv[0]);
        return 2;
    }
    make_tmp_dir();
    select_kernels();
    models_dir = getenv("MODELS") && getenv("MODELS")[0] ? getenv("MODELS") : "models";

    // Every file the model tests read: a missing one is a failure that names it, never a skip.
    const char *needed[] = {"stories260K.bin", "stories260K_q80_gs4.bin", "stories260K.gguf", "tok512.bin",
                            "tok512.model", "tokenizer.bin", "tokenizer.model", "llama-2-tiny-random.bin",
                            "llama-2-tiny-random.gguf", "stories260K-hf/config.json", "stories260K-hf/model.safetensors",
                            "stories260K-hf/tokenizer.model", "stories260K-meta/params.json",
                            "stories260K-meta/consolidated.00.pth", "stories260K-meta/tokenizer.model",
                            "llama3/llama3-vocab.gguf", "llama3/tokenizer.json", "llama3/tokenizer_config.json"};
    char missing[4096] = "";
    for (size_t i = 0; i < sizeof(needed) / sizeof(needed[0]); i++)
        if (!file_exists(model_path(needed[i])))
            snprintf(missing + strlen(missing), sizeof(missing) - strlen(missing), " %s", needed[i]);
    for (size_t i = 0; i < sizeof(wide1_files) / sizeof(wide1_files[0]); i++) {
        char name[128];
        snprintf(name, sizeof(name), "stories260K-wide/wide1-%s.gguf", wide1_files[i]);
        if (!file_exists(model_path(name))) snprintf(missing + strlen(missing), sizeof(missing) - strlen(missing), " %s", name);
    }
    int have_models = missing[0] == '\0', missed = 0;
    for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
        if (!could_match(tests[i].prefix)) continue;
        if ((in_process && tests[i].kind != IN_PROCESS) || (programs && tests[i].kind != PROGRAM)) continue;
        if (tests[i].needs_models && !have_models) {
            missed = 1;
            continue;
        }
        running = tests[i].prefix;
        tests[i].run();
        running = NULL;
    }
    if (missed) {
        printf("\n*** MODELS MISSING in %s:%s\n*** the tests that read them were NOT RUN (see models/README.md).\n\n",
               models_dir, missing);
        running = "models-";
        check("models-present", 0, "missing in %s:%s", models_dir, missing);
    }
    if (only && n_passed + n_failed == 0) { // a typo must not pass
        printf("FAIL no check's id starts with '%s'%s\n", only,
               in_process ? " among those --in-process runs" : programs ? " among those --programs runs" : "");
        n_failed++;
    }

    if (n_skipped) printf("%d skipped (SKIP above: each says why)\n", n_skipped);
    printf("%d passed, %d failed\n", n_passed, n_failed);
    return n_failed == 0 ? 0 : 1;
}
