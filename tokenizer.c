/* tokenizer.c: text <-> token ids for Llama 2, as SentencePiece does it.

   This file is part of run.c (run.c includes it after the forward pass; it is
   not compiled on its own) and uses run.c's helpers: fatal() for every error
   in a user's file, xmalloc() and xrealloc(), read_u32le() and the piece
   types (PIECE_NORMAL, ...) that GGUF files record.

   The model never sees text, only ids of "pieces" from a fixed vocabulary.
   Encoding follows SentencePiece's BPE exactly, because the model was trained
   on its ids and any other split is text it has never seen:
     1. normalize: a space is prepended (the "dummy prefix"), so a word at the
        start looks like a word after a space; spaces become the meta symbol
        U+2581; bytes that are not valid UTF-8 become U+FFFD, one per byte.
        Two flags of the SentencePiece model change this: add_dummy_prefix
        (on for Llama 2), and remove_extra_whitespaces (off for Llama 2, on by
        SentencePiece's default): leading and trailing spaces dropped, runs
        of spaces collapsed to one;
     2. split into characters (UTF-8 code points);
     3. repeatedly merge the adjacent pair whose concatenation is the vocabulary
        piece with the highest score (leftmost on ties), until no pair is a piece;
     4. a symbol that is still not a piece falls back to one <0xNN> piece per
        byte of its UTF-8 encoding; in a vocabulary without them, a run of
        such symbols is one <unk>.
   User-defined pieces (GGUF's USER_DEFINED) are matched whole in step 2,
   longest first, and never merged with their neighbours.
   Decoding maps ids back to pieces, turns <0xNN> pieces into raw bytes and
   reassembles them into UTF-8 characters.

   The file format is llama2.c's tokenizer.bin, little-endian:
     int32 max_token_length (the longest piece's length; none may be longer)
     then for each token: float32 score (finite), int32 length, length bytes of text
   U+2581 is already written as ' ' there, so this file uses ' ' for it too. */

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// Data structures

typedef struct {
    int vocab_size;
    char **piece;        // (vocab_size) text of each token, NUL-terminated
    int *piece_len;      // (vocab_size) its length in bytes
    float *score;        // (vocab_size) merge priority: higher merges first
    int16_t *byte_value; // (vocab_size) 0..255 for a <0xNN> piece, else -1
    int byte_token[256]; // id of the <0xNN> piece for each byte, or -1
    int unk_id, bos_id, eos_id;
    // The SentencePiece model's normalizer flags (see step 1 above), and whether
    // a text starts with <s>. tokenizer.bin cannot say: it gets Llama 2's (1, 0, 1).
    int add_dummy_prefix, remove_extra_whitespaces, add_bos;
    int max_piece_len;   // no longer text can be a piece: a fast reject
    // Open-addressing hash from piece text to id, holding only the pieces
    // that text may be merged into: not <unk>, <s>, </s> nor <0xNN>.
    int *lookup;         // (lookup_mask + 1) token id, or -1 for empty
    size_t lookup_mask;
    int *user_piece;     // (n_user) ids of the user-defined pieces, matched whole before BPE
    int n_user;
    char *text_storage;  // one block holding every piece's text
} Tokenizer;

// ----------------------------------------------------------------------------
// Loading

// FNV-1a: simple, and good enough for a table kept at most half full.
static uint32_t hash_bytes(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

// The id of the mergeable piece whose text is s[0..n), or -1.
static int lookup_piece(const Tokenizer *t, const char *s, size_t n) {
    if (n > (size_t)t->max_piece_len) return -1;
    for (size_t slot = hash_bytes(s, n) & t->lookup_mask;; slot = (slot + 1) & t->lookup_mask) {
        int id = t->lookup[slot];
        if (id < 0) return -1;
        if ((size_t)t->piece_len[id] == n && memcmp(t->piece[id], s, n) == 0) return id;
    }
}

// A piece "<0xNN>" (upper-case hex, as SentencePiece writes it) stands for one raw byte.
static int parse_byte_piece(const char *s, int n) {
    static const char hex[] = "0123456789ABCDEF";
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    const char *hi = memchr(hex, s[3], 16), *lo = memchr(hex, s[4], 16);
    if (!hi || !lo) return -1;
    return (int)(hi - hex) * 16 + (int)(lo - hex);
}

// Reads a whole file into memory; the caller frees it.
static unsigned char *read_whole_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) fatal("cannot open %s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    unsigned char *data = xmalloc(cap, path);
    for (;;) {
        n += fread(data + n, 1, cap - n, f);
        if (n < cap) break;
        data = xrealloc(data, cap *= 2, path);
    }
    if (ferror(f)) fatal("cannot read %s: %s", path, strerror(errno));
    fclose(f);
    *size = n;
    return data;
}

// Finds the byte pieces and builds the lookup of mergeable pieces, once every
// piece is in place. types (one per token) says which pieces text may become:
// normal and user-defined ones, as in SentencePiece. Without types (llama2.c's
// tokenizer.bin has none), <unk>, <s>, </s> and the <0xNN> pieces are left out.
static void index_tokenizer(Tokenizer *t, const int32_t *types, const char *path) {
    int n = t->vocab_size;
    for (int b = 0; b < 256; b++) t->byte_token[b] = -1;
    for (int i = 0; i < n; i++) {
        int b = parse_byte_piece(t->piece[i], t->piece_len[i]);
        if (types && types[i] != PIECE_BYTE) b = -1;
        t->byte_value[i] = (int16_t)b;
        if (b >= 0 && t->byte_token[b] < 0) t->byte_token[b] = i;
    }
    // Hash table of mergeable pieces, at most half full so probes stay short.
    size_t cap = 1;
    while (cap < 2 * (size_t)n) cap <<= 1;
    t->lookup = xmalloc(cap * sizeof(int), path);
    memset(t->lookup, 0xff, cap * sizeof(int)); // every slot -1
    t->lookup_mask = cap - 1;
    t->user_piece = xmalloc((n + 1) * sizeof(int), path);
    for (int i = 0; i < n && types; i++)
        if (types[i] == PIECE_USER_DEFINED && t->piece_len[i] > 0) t->user_piece[t->n_user++] = i;
    for (int i = 0; i < n; i++) {
        int mergeable = types ? types[i] == PIECE_NORMAL || types[i] == PIECE_USER_DEFINED
                              : i != t->unk_id && i != t->bos_id && i != t->eos_id && t->byte_value[i] < 0;
        if (!mergeable) continue;
        if (t->piece_len[i] > t->max_piece_len) t->max_piece_len = t->piece_len[i];
        if (lookup_piece(t, t->piece[i], t->piece_len[i]) >= 0) continue; // a duplicate: the first id wins
        size_t slot = hash_bytes(t->piece[i], t->piece_len[i]) & t->lookup_mask;
        while (t->lookup[slot] >= 0) slot = (slot + 1) & t->lookup_mask;
        t->lookup[slot] = i;
    }
}

static void alloc_tokenizer(Tokenizer *t, int n, size_t text_bytes, const char *path) {
    memset(t, 0, sizeof(*t));
    t->vocab_size = n;
    t->add_dummy_prefix = 1, t->remove_extra_whitespaces = 0, t->add_bos = 1; // Llama 2's
    t->piece = xmalloc(n * sizeof(char *), path);
    t->piece_len = xmalloc(n * sizeof(int), path);
    t->score = xmalloc(n * sizeof(float), path);
    t->byte_value = xmalloc(n * sizeof(int16_t), path);
    t->text_storage = xmalloc(text_bytes, path);
}

// Loads tokenizer.bin. The file does not store its number of tokens, so the
// whole file is walked and the count checked by the caller against the model.
static void parse_tokenizer(Tokenizer *t, const unsigned char *data, size_t size, const char *path);

// The file being parsed. A refusal exits through fatal() while it is in use; this
// pointer keeps it reachable then, so LeakSanitizer (make test-sanitize) sees no leak.
static unsigned char *volatile file_in_use; // volatile: never read, yet it must be stored

static void build_tokenizer(Tokenizer *t, const char *path) {
    size_t size;
    unsigned char *data = file_in_use = read_whole_file(path, &size);
    parse_tokenizer(t, data, size, path);
    free(data);
    file_in_use = NULL;
}

// Reads tokenizer.bin's bytes (size of them). Every length is checked against the bytes left.
static void parse_tokenizer(Tokenizer *t, const unsigned char *data, size_t size, const char *path) {
    if (size < 4) fatal("%s: %zu bytes is too short for a tokenizer file (llama2.c tokenizer.bin format)", path, size);
    // A SentencePiece .model is a protocol buffer: field 1 (a piece) whose own field 1 is its
    // text, so 0x0A, a length, 0x0A. Read as tokenizer.bin, it would fail on some absurd length.
    if (data[0] == 0x0A && data[1] != 0 && (data[2] == 0x0A || data[3] == 0x0A))
        fatal("%s is a SentencePiece model, not a tokenizer.bin: convert it with python3 export.py OUT.bin --tokenizer %s",
              path, path);

    // First pass: count the entries and check that each lies inside the file,
    // is no longer than the header says, and has a finite score.
    int32_t max_token_length = (int32_t)read_u32le(data);
    size_t n_tokens = 0, text_bytes = 0;
    for (size_t off = 4; off < size; n_tokens++) {
        if (size - off < 8) fatal("%s: token %zu: entry truncated at byte %zu of %zu", path, n_tokens, off, size);
        uint32_t len = read_u32le(data + off + 4);
        if (len > size - off - 8)
            fatal("%s: token %zu: says %u bytes of text, only %zu left in the file", path, n_tokens, len, size - off - 8);
        if ((int64_t)len > max_token_length)
            fatal("%s: token %zu: piece of %u bytes, expected at most the header's max_token_length %d", path,
                  n_tokens, len, max_token_length);
        float score;
        memcpy(&score, data + off, 4);
        if (!isfinite(score))
            fatal("%s: token %zu: score is %s, expected a finite number", path, n_tokens, isnan(score) ? "NaN" : "infinite");
        off += 8 + len;
        text_bytes += len + 1;
    }
    if (n_tokens < 3 || n_tokens > (1 << 24))
        fatal("%s: holds %zu tokens, expected between 3 and %d", path, n_tokens, 1 << 24);

    // Second pass: copy the pieces out.
    int n = (int)n_tokens;
    alloc_tokenizer(t, n, text_bytes, path);
    char *text = t->text_storage;
    size_t off = 4;
    for (int i = 0; i < n; i++) {
        memcpy(&t->score[i], data + off, 4); // float32, little-endian like the host
        int len = (int)read_u32le(data + off + 4);
        memcpy(text, data + off + 8, len);
        text[len] = '\0';
        t->piece[i] = text;
        t->piece_len[i] = len;
        text += len + 1;
        off += 8 + len;
    }
    // llama2.c's convention, as in Meta's tokenizer: 0 <unk>, 1 <s>, 2 </s>.
    t->unk_id = 0, t->bos_id = 1, t->eos_id = 2;
    index_tokenizer(t, NULL, path);
}

// Builds a tokenizer from a vocabulary as GGUF files hold it: SentencePiece's
// pieces with U+2581 for a space (written ' ' here), scores and types.
// piece_text(i, &len) gives piece i's bytes.
static void build_tokenizer_from_vocab(Tokenizer *t, int n, const char *(*piece_text)(void *, int, size_t *),
                                       void *ctx, const float *scores, const int32_t *types, int unk_id, int bos_id,
                                       int eos_id, const char *path) {
    size_t text_bytes = 0;
    for (int i = 0; i < n; i++) {
        size_t len;
        piece_text(ctx, i, &len);
        text_bytes += len + 1;
    }
    alloc_tokenizer(t, n, text_bytes, path);
    char *text = t->text_storage;
    for (int i = 0; i < n; i++) {
        size_t len, out = 0;
        const char *s = piece_text(ctx, i, &len);
        for (size_t k = 0; k < len; k++) { // U+2581 (3 bytes) becomes ' ' (1 byte): never longer
            if (k + 3 <= len && memcmp(s + k, "\xE2\x96\x81", 3) == 0) text[out++] = ' ', k += 2;
            else text[out++] = s[k];
        }
        text[out] = '\0';
        t->piece[i] = text;
        t->piece_len[i] = (int)out;
        t->score[i] = scores ? scores[i] : 0.0f;
        text += out + 1;
    }
    t->unk_id = unk_id, t->bos_id = bos_id, t->eos_id = eos_id;
    index_tokenizer(t, types, path);
}

static void free_tokenizer(Tokenizer *t) {
    free(t->piece);
    free(t->piece_len);
    free(t->score);
    free(t->byte_value);
    free(t->text_storage);
    free(t->lookup);
    free(t->user_piece);
}

// ----------------------------------------------------------------------------
// UTF-8

// Length of the valid UTF-8 character at s[0..n), or 0 if the bytes there are
// not one. Strict, as SentencePiece is: no overlong forms, no surrogates,
// nothing above U+10FFFF.
static int utf8_char_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    int len;
    uint32_t cp, min;
    if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07, min = 0x10000;
    else return 0;
    if (n < (size_t)len) return 0;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

// Could s[0..n) still grow into a valid character as more bytes arrive?
static int utf8_is_valid_prefix(const unsigned char *s, size_t n) {
    // Try every possible completion's tightest case: pad with the trail byte
    // that keeps the code point smallest and largest, and see if one is valid.
    unsigned char buf[4];
    int need = (s[0] & 0xE0) == 0xC0 ? 2 : (s[0] & 0xF0) == 0xE0 ? 3 : (s[0] & 0xF8) == 0xF0 ? 4 : 0;
    if (need == 0 || n >= (size_t)need) return 0;
    for (int pad = 0x80; pad <= 0xBF; pad += 0x3F) {
        memcpy(buf, s, n);
        for (int i = (int)n; i < need; i++) buf[i] = (unsigned char)pad;
        if (utf8_char_len(buf, need) == need) return 1;
    }
    return 0;
}

// ----------------------------------------------------------------------------
// Encoding: SentencePiece BPE

static const char replacement_char[] = "\xEF\xBF\xBD"; // U+FFFD
static const char meta_space[] = "\xE2\x96\x81";       // U+2581, SentencePiece's space

// Step 1. Returns a new buffer: ' ' prepended, U+2581 written as ' ' (this
// vocabulary's spelling of it), each invalid byte replaced by U+FFFD. With
// remove_extra_whitespaces, as SentencePiece's normalizer does it: only the
// ASCII space counts as a space while reading (leading ones and repeats are
// dropped; a U+2581 in the text stays), but at the end every trailing space
// symbol goes, U+2581 and the dummy prefix included.
static char *normalize(const Tokenizer *t, const char *text, size_t len, size_t *out_len) {
    char *out = xmalloc(3 * len + 2, "the text to encode"); // worst case: every byte becomes U+FFFD
    size_t n = 0, i = 0;
    int squeeze = t->remove_extra_whitespaces;
    if (squeeze)
        while (i < len && text[i] == ' ') i++;
    if (i < len && t->add_dummy_prefix) out[n++] = ' ';
    for (int prev_space = squeeze; i < len;) {
        int cl = utf8_char_len((const unsigned char *)text + i, len - i);
        if (squeeze && prev_space && text[i] == ' ') {
            i += 1;
            continue;
        }
        prev_space = text[i] == ' ';
        if (cl == 0) {
            memcpy(out + n, replacement_char, 3), n += 3, i += 1;
        } else if (cl == 3 && memcmp(text + i, meta_space, 3) == 0) {
            out[n++] = ' ', i += 3;
        } else {
            memcpy(out + n, text + i, cl), n += cl, i += cl;
        }
    }
    if (squeeze)
        while (n > 0 && out[n - 1] == ' ') n--;
    *out_len = n;
    return out;
}

// A symbol is a run of the normalized text, start..start+len; merged symbols
// stay contiguous, so a pair's text is simply the span covering both.
typedef struct {
    int start, len;
    int prev, next; // neighbours in the list of live symbols, -1 at the ends
    int frozen;     // a user-defined piece: never merged
} Symbol;

// A candidate merge of symbol `left` with its right neighbour.
typedef struct {
    float score;
    int left, right;
    int len; // left.len + right.len when queued; a mismatch later means stale
    int id;
} MergeCandidate;

// Max-heap order: higher score first, then the leftmost pair.
static int merge_before(const MergeCandidate *a, const MergeCandidate *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

typedef struct {
    MergeCandidate *items;
    int n, cap;
} MergeQueue;

static void queue_push(MergeQueue *q, MergeCandidate c) {
    if (q->n == q->cap) {
        q->cap = q->cap ? 2 * q->cap : 64;
        q->items = xrealloc(q->items, q->cap * sizeof(MergeCandidate), "the text to encode");
    }
    int i = q->n++;
    while (i > 0 && merge_before(&c, &q->items[(i - 1) / 2])) {
        q->items[i] = q->items[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    q->items[i] = c;
}

static MergeCandidate queue_pop(MergeQueue *q) {
    MergeCandidate top = q->items[0], last = q->items[--q->n];
    int i = 0;
    for (;;) {
        int child = 2 * i + 1;
        if (child >= q->n) break;
        if (child + 1 < q->n && merge_before(&q->items[child + 1], &q->items[child])) child++;
        if (!merge_before(&q->items[child], &last)) break;
        q->items[i] = q->items[child];
        i = child;
    }
    if (q->n > 0) q->items[i] = last;
    return top;
}

static void queue_pair(const Tokenizer *t, const char *text, const Symbol *sym, MergeQueue *q, int left) {
    if (left < 0 || sym[left].next < 0) return;
    int right = sym[left].next;
    if (sym[left].frozen || sym[right].frozen) return;
    int len = sym[left].len + sym[right].len;
    int id = lookup_piece(t, text + sym[left].start, len);
    if (id < 0) return;
    queue_push(q, (MergeCandidate){t->score[id], left, right, len, id});
}

// Encodes len bytes of text into a new array of ids (the caller frees it),
// with <s> first if bos and </s> last if eos. Any bytes are accepted.
static int *encode(const Tokenizer *t, const char *text, size_t len, int bos, int eos, int *n_tokens) {
    size_t norm_len;
    char *norm = normalize(t, text, len, &norm_len);
    if (norm_len > (size_t)INT32_MAX / 2) fatal("text of %zu bytes is too long to encode", len);

    // Step 2: one symbol per character, or per user-defined piece (the longest that matches here).
    Symbol *sym = xmalloc((norm_len + 1) * sizeof(Symbol), "the text to encode");
    int n_sym = 0;
    for (size_t i = 0; i < norm_len; n_sym++) {
        int cl = utf8_char_len((const unsigned char *)norm + i, norm_len - i), frozen = 0; // valid after normalize
        for (int u = 0; u < t->n_user; u++) {
            int id = t->user_piece[u], len = t->piece_len[id];
            if ((frozen ? len > cl : len >= cl) && (size_t)len <= norm_len - i && memcmp(norm + i, t->piece[id], len) == 0)
                cl = len, frozen = 1;
        }
        sym[n_sym] = (Symbol){(int)i, cl, n_sym - 1, -1, frozen};
        if (n_sym > 0) sym[n_sym - 1].next = n_sym;
        i += cl;
    }

    // Step 3: merge the best pair until none is left. Each merge queues the two
    // new pairs it creates; queued pairs that a merge has since changed are stale.
    MergeQueue queue = {0};
    for (int i = 0; i + 1 < n_sym; i++) queue_pair(t, norm, sym, &queue, i);
    while (queue.n > 0) {
        MergeCandidate c = queue_pop(&queue);
        Symbol *l = &sym[c.left], *r = &sym[c.right];
        if (l->len == 0 || r->len == 0 || l->next != c.right || l->len + r->len != c.len) continue;
        l->len += r->len;
        r->len = 0; // dead
        l->next = r->next;
        if (l->next >= 0) sym[l->next].prev = c.left;
        queue_pair(t, norm, sym, &queue, l->prev);
        queue_pair(t, norm, sym, &queue, c.left);
    }
    free(queue.items);

    // Step 4: emit ids; a symbol that is not a piece becomes bytes, or, where the
    // vocabulary lacks them, <unk>: one for a whole run of such symbols, as SentencePiece does.
    int *tokens = xmalloc((norm_len + 2) * sizeof(int), "the text to encode"); // one id per byte at most, plus <s> and </s>
    int n = 0, in_unknown = 0;
    if (bos) tokens[n++] = t->bos_id;
    for (int i = n_sym > 0 ? 0 : -1; i >= 0; i = sym[i].next) {
        int id = lookup_piece(t, norm + sym[i].start, sym[i].len), bytes = 1;
        for (int k = 0; id < 0 && k < sym[i].len; k++) bytes &= t->byte_token[(unsigned char)norm[sym[i].start + k]] >= 0;
        if (id < 0 && !bytes) {
            if (!in_unknown) tokens[n++] = t->unk_id;
            in_unknown = 1;
            continue;
        }
        in_unknown = 0;
        if (id >= 0) {
            tokens[n++] = id;
            continue;
        }
        for (int k = 0; k < sym[i].len; k++) tokens[n++] = t->byte_token[(unsigned char)norm[sym[i].start + k]];
    }
    if (eos) tokens[n++] = t->eos_id;
    free(sym);
    free(norm);
    *n_tokens = n;
    return tokens;
}

// ----------------------------------------------------------------------------
// Decoding and printing

// The text of `token`; at_start: nothing of the text has been printed since <s>.
// There a piece drops one leading space, the dummy prefix encode() added (or,
// removing extra whitespace, one of the spaces SentencePiece's decoder strips).
static const char *decode(const Tokenizer *t, int at_start, int token, int *len) {
    const char *s = t->piece[token];
    *len = t->piece_len[token];
    if (at_start && (t->add_dummy_prefix || t->remove_extra_whitespaces) && *len > 0 && s[0] == ' ') s++, (*len)--;
    return s;
}

// Writes decoded tokens to a stream. <0xNN> pieces arrive one byte at a time,
// so bytes are held until they complete a UTF-8 character; bytes that cannot
// (a stray continuation byte, a character cut short) print as U+FFFD each,
// as SentencePiece's decoder does. Control bytes other than whitespace are not
// printed: a sampled one could otherwise drive the terminal.
//
// Stop strings end the text where they appear, and are not printed: text
// that could be the start of one is held back until it is known not to be.
typedef struct {
    FILE *out;
    unsigned char pending[4]; // bytes of a character not yet complete
    int n_pending;
    const char *const *stops; // (n_stops) NUL-terminated
    int n_stops;
    char *held;               // text that may begin a stop string
    size_t n_held, held_cap;
    int stopped;              // a stop string appeared: nothing more is printed
    int at_start;             // right after <s>, nothing printed yet: see decode()
} Printer;

static Printer make_printer(FILE *out, const char *const *stops, int n_stops) {
    Printer p = {out, {0}, 0, stops, n_stops, NULL, 0, 0, 0, 0};
    return p;
}

// Where needle first occurs in hay, or -1.
static long find_bytes(const char *hay, size_t n, const char *needle, size_t m) {
    for (size_t i = 0; m <= n && i <= n - m; i++)
        if (memcmp(hay + i, needle, m) == 0) return (long)i;
    return -1;
}

static void emit(Printer *p, const char *s, size_t n) {
    if (p->stopped) return;
    if (p->n_stops == 0) {
        fwrite(s, 1, n, p->out);
        return;
    }
    if (p->n_held + n > p->held_cap) {
        p->held_cap = (p->n_held + n) * 2;
        p->held = xrealloc(p->held, p->held_cap, "the text being printed");
    }
    memcpy(p->held + p->n_held, s, n);
    p->n_held += n;
    long first = -1; // the earliest stop string in the held text ends it there
    for (int i = 0; i < p->n_stops; i++) {
        long at = find_bytes(p->held, p->n_held, p->stops[i], strlen(p->stops[i]));
        if (at >= 0 && (first < 0 || at < first)) first = at;
    }
    if (first >= 0) {
        fwrite(p->held, 1, first, p->out);
        p->n_held = 0;
        p->stopped = 1;
        return;
    }
    size_t keep = 0; // the longest tail of the held text that begins a stop string
    for (int i = 0; i < p->n_stops; i++) {
        size_t len = strlen(p->stops[i]);
        for (size_t k = len - 1 < p->n_held ? len - 1 : p->n_held; k > keep; k--)
            if (memcmp(p->held + p->n_held - k, p->stops[i], k) == 0) {
                keep = k;
                break;
            }
    }
    fwrite(p->held, 1, p->n_held - keep, p->out);
    memmove(p->held, p->held + p->n_held - keep, keep);
    p->n_held = keep;
}

static void put_text(Printer *p, const char *s, size_t n) {
    if (n == 1) {
        unsigned char c = (unsigned char)s[0];
        int control = (c < 0x20 && !(c >= '\t' && c <= '\r')) || c == 0x7F;
        if (control) return;
    }
    emit(p, s, n);
}

// Prints the complete characters at the front of pending, and U+FFFD for each
// byte that can no longer start one. With `final`, nothing is left waiting.
static void drain_pending(Printer *p, int final) {
    while (p->n_pending > 0) {
        int cl = utf8_char_len(p->pending, p->n_pending);
        if (cl == 0 && !final && utf8_is_valid_prefix(p->pending, p->n_pending)) return; // wait for more
        if (cl == 0) cl = 1, put_text(p, replacement_char, 3);
        else put_text(p, (const char *)p->pending, cl);
        p->n_pending -= cl;
        memmove(p->pending, p->pending + cl, p->n_pending);
    }
}

// prev is the token before this one (after <s>, a piece drops its leading space).
static void print_token(Printer *p, const Tokenizer *t, int prev, int token) {
    if (prev == t->bos_id) p->at_start = 1;
    int b = t->byte_value[token];
    if (b >= 0) {
        p->at_start = 0;
        p->pending[p->n_pending++] = (unsigned char)b;
        drain_pending(p, 0);
        return;
    }
    drain_pending(p, 1);
    if (token == t->unk_id) { // as SentencePiece's decoder shows it, with its default surface " ⁇ " (U+2047)
        p->at_start = 0;
        put_text(p, " \xE2\x81\x87 ", 5);
        return;
    }
    int len;
    const char *s = decode(t, p->at_start, token, &len);
    // SentencePiece's decoder strips one space per piece until some text appears when it
    // removes extra whitespace; otherwise only the first piece's.
    if (len > 0 || !t->remove_extra_whitespaces) p->at_start = 0;
    put_text(p, s, len);
}

// Ends the text: bytes still waiting for the rest of a character print as
// U+FFFD, and text held for a stop string that never came is printed.
static void print_flush(Printer *p) {
    drain_pending(p, 1);
    if (!p->stopped && p->n_held > 0) fwrite(p->held, 1, p->n_held, p->out);
    free(p->held);
    p->held = NULL, p->n_held = p->held_cap = 0;
    fflush(p->out);
}
