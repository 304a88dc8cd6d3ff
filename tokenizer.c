/* tokenizer.c: text <-> token ids, as the model's own tokenizer does it:
   SentencePiece's BPE for Llama 2 (and Mistral, TinyLlama, CodeLlama), and
   byte-level BPE for Llama 3.

   This file is part of run.c (run.c includes it after the forward pass; it is
   not compiled on its own) and uses run.c's helpers: fatal() for every error
   in a user's file, xmalloc() and xrealloc(), read_u32le(), GGUFVocab and the
   piece types (PIECE_NORMAL, ...) that GGUF files record.

   The model never sees text, only ids of "pieces" from a fixed vocabulary.
   Encoding must split text exactly as the model's trainers did, because the
   model was trained on their ids and any other split is text it has never seen.

   SentencePiece (Llama 2):
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

   Byte-level BPE (Llama 3, as GPT-2 made it and Hugging Face's tokenizers run it):
     1. bytes that are not valid UTF-8 become U+FFFD, one per byte;
        user-defined pieces are cut out whole first;
     2. pre-tokenize: cut the text into words by Llama 3's rule (a regular
        expression in its tokenizer.json, written out below as a small hand
        matcher): letters with at most one character before them, numbers of
        up to 3 digits, punctuation runs, whitespace runs, contractions 's 't
        're 've 'm 'll 'd;
     3. a word that is itself a token is that token (Hugging Face's
        ignore_merges: "Cửa Việt" depends on it); otherwise it starts as one
        symbol per byte, and the adjacent pair with the lowest-ranked merge
        rule is merged (leftmost on ties), until no rule applies.
   Its vocabulary writes each byte as one printable character (GPT-2's
   byte-to-Unicode map: a space is 'Ġ'); pieces are turned back into raw bytes
   when loaded, so everything below works on bytes.

   Control tokens (<s>, <|eot_id|>, ...) never come out of text: a prompt's
   "<|eot_id|>" is text, split like any other. Only the chat formats put
   control tokens into a conversation, by id.

   Decoding maps ids back to pieces, turns byte pieces into raw bytes and
   reassembles them into UTF-8 characters; control tokens print nothing.

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

// One merge rule of byte-level BPE: the pair (left, right) becomes `merged`.
typedef struct {
    int32_t left, right; // token ids; left < 0 marks an empty slot of the table
    int32_t rank;        // the rule's place in the list: lower merges first
    int32_t merged;      // the id of left's bytes followed by right's
} MergeRule;

typedef struct {
    int bpe;             // byte-level BPE (Llama 3); else SentencePiece (Llama 2)
    int vocab_size;
    char **piece;        // (vocab_size) text of each token, NUL-terminated; raw bytes for BPE
    int *piece_len;      // (vocab_size) its length in bytes
    float *score;        // (vocab_size) SentencePiece: merge priority, higher merges first
    uint8_t *type;       // (vocab_size) PIECE_NORMAL, PIECE_CONTROL, ...
    int16_t *byte_value; // (vocab_size) 0..255 for a <0xNN> piece, else -1
    int byte_token[256]; // id of the piece of each single byte, or -1
    int unk_id, bos_id, eos_id; // -1: none
    // The SentencePiece model's normalizer flags (see step 1 above), and whether
    // a text starts with <s>. tokenizer.bin cannot say: it gets Llama 2's (1, 0, 1).
    int add_dummy_prefix, remove_extra_whitespaces, add_bos;
    int ignore_merges;   // BPE: a word that is itself a token is taken whole
    int max_piece_len;   // no longer text can be a piece: a fast reject
    // Open-addressing hash from piece text to id, holding only the pieces that
    // text may become: for SentencePiece not <unk>, <s>, </s> nor <0xNN>; for
    // BPE the normal pieces.
    int *lookup;         // (lookup_mask + 1) token id, or -1 for empty
    size_t lookup_mask;
    MergeRule *merge;    // (merge_mask + 1) BPE's merge rules, hashed by pair
    size_t merge_mask;
    int *user_piece;     // (n_user) ids of the user-defined pieces, matched whole before anything else
    int n_user;
    int end_id[8];       // (n_end) tokens that end generation: </s>, <|eot_id|>, <|eom_id|>, ...
    int n_end;
    char *text_storage;  // one block holding every piece's text
} Tokenizer;

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

// The code point of the valid character at s[0..n), and its length in *len.
static uint32_t next_char(const char *s, size_t n, int *len) {
    const unsigned char *u = (const unsigned char *)s;
    int cl = utf8_char_len(u, n);
    *len = cl ? cl : 1;
    if (cl <= 1) return u[0];
    uint32_t cp = u[0] & (0x7F >> cl); // the lead byte's bits
    for (int i = 1; i < cl; i++) cp = cp << 6 | (u[i] & 0x3F);
    return cp;
}

static const char replacement_char[] = "\xEF\xBF\xBD"; // U+FFFD

// A new buffer holding text with every byte that does not begin a valid UTF-8
// character replaced by U+FFFD (so one U+FFFD per byte of a broken sequence).
static char *replace_invalid_utf8(const char *text, size_t len, size_t *out_len) {
    char *out = xmalloc(3 * len + 1, "the text to encode"); // worst case: every byte becomes U+FFFD
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        int cl = utf8_char_len((const unsigned char *)text + i, len - i);
        if (cl == 0) memcpy(out + n, replacement_char, 3), n += 3, i += 1;
        else memcpy(out + n, text + i, cl), n += cl, i += cl;
    }
    *out_len = n;
    return out;
}

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
    FILE *f = open_file(path, "rb");
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

// Up to 40 bytes of s, control bytes as '?', for naming a piece in a one-line message.
static const char *shown(const char *s, size_t n, char out[44]) {
    size_t k = n < 40 ? n : 40;
    for (size_t i = 0; i < k; i++) out[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7F ? '?' : s[i];
    memcpy(out + k, n > 40 ? "..." : "", n > 40 ? 4 : 1);
    return out;
}

static void add_end_token(Tokenizer *t, int id) {
    if (id < 0 || id >= t->vocab_size || t->n_end == (int)(sizeof(t->end_id) / sizeof(t->end_id[0]))) return;
    for (int e = 0; e < t->n_end; e++)
        if (t->end_id[e] == id) return;
    t->end_id[t->n_end++] = id;
}

// The tokens that end generation, as llama.cpp gathers them: </s> (eos), the
// end-of-turn and end-of-message tokens a GGUF file names (named, -1 for
// none), and any token whose text is one that ends a text or a turn in the
// vocabularies of Llama and its fine-tunes.
static void find_end_tokens(Tokenizer *t, const int *named, int n_named) {
    static const char *const ending[] = {"<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<|im_end|>",
                                         "<|endoftext|>", "<|end|>", "<EOT>", "<end_of_turn>"};
    for (int i = 0; i < n_named; i++) add_end_token(t, named[i]);
    for (int i = 0; i < t->vocab_size; i++)
        for (size_t k = 0; k < sizeof(ending) / sizeof(ending[0]); k++)
            if ((size_t)t->piece_len[i] == strlen(ending[k]) && memcmp(t->piece[i], ending[k], t->piece_len[i]) == 0)
                add_end_token(t, i);
}

// Finds the byte pieces and the user-defined ones, and builds the lookup of
// the pieces text may become, once every piece and its type is in place:
// for SentencePiece normal and user-defined pieces, for BPE normal ones.
static void index_tokenizer(Tokenizer *t, const char *path) {
    int n = t->vocab_size;
    for (int b = 0; b < 256; b++) t->byte_token[b] = -1;
    for (int i = 0; i < n; i++) {
        int b = t->bpe || t->type[i] != PIECE_BYTE ? -1 : parse_byte_piece(t->piece[i], t->piece_len[i]);
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
    for (int i = 0; i < n; i++)
        if (t->type[i] == PIECE_USER_DEFINED && t->piece_len[i] > 0) t->user_piece[t->n_user++] = i;
    for (int i = 0; i < n; i++) {
        int mergeable = t->type[i] == PIECE_NORMAL || (!t->bpe && t->type[i] == PIECE_USER_DEFINED);
        if (!mergeable) continue;
        if (t->piece_len[i] > t->max_piece_len) t->max_piece_len = t->piece_len[i];
        if (lookup_piece(t, t->piece[i], t->piece_len[i]) >= 0) continue; // a duplicate: the first id wins
        size_t slot = hash_bytes(t->piece[i], t->piece_len[i]) & t->lookup_mask;
        while (t->lookup[slot] >= 0) slot = (slot + 1) & t->lookup_mask;
        t->lookup[slot] = i;
    }
    // Byte-level BPE starts every word as bytes: each must be a piece of its own.
    for (int b = 0; b < 256 && t->bpe; b++) {
        char byte = (char)b;
        t->byte_token[b] = lookup_piece(t, &byte, 1);
        if (t->byte_token[b] < 0)
            fatal("%s: the BPE vocabulary has no token for the byte 0x%02X; byte-level BPE needs one for each of the "
                  "256", path, b);
    }
}

// Without types (llama2.c's tokenizer.bin, some GGUF files), a piece's type
// comes from its id and its name: <unk>, <s> and </s> by id, <0xNN> bytes.
static void guess_types(Tokenizer *t) {
    for (int i = 0; i < t->vocab_size; i++) {
        t->type[i] = PIECE_NORMAL;
        if (i == t->unk_id) t->type[i] = PIECE_UNKNOWN;
        else if (i == t->bos_id || i == t->eos_id) t->type[i] = PIECE_CONTROL;
        else if (!t->bpe && parse_byte_piece(t->piece[i], t->piece_len[i]) >= 0) t->type[i] = PIECE_BYTE;
    }
}

static void alloc_tokenizer(Tokenizer *t, int n, size_t text_bytes, const char *path) {
    memset(t, 0, sizeof(*t));
    t->vocab_size = n;
    t->add_dummy_prefix = 1, t->remove_extra_whitespaces = 0, t->add_bos = 1; // Llama 2's
    t->piece = xmalloc(n * sizeof(char *), path);
    t->piece_len = xmalloc(n * sizeof(int), path);
    t->score = xmalloc(n * sizeof(float), path);
    t->type = xmalloc(n, path);
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
    guess_types(t);
    index_tokenizer(t, path);
    find_end_tokens(t, &t->eos_id, 1);
}

// GPT-2's byte-level alphabet: each byte is written as one printable character.
// The printable bytes of Latin-1 stand for themselves; the other 68 (controls,
// space, DEL, NBSP, soft hyphen) take U+0100, U+0101, ... in byte order, so
// a space is U+0120 'Ġ' and a newline U+010A 'Ċ'.
static int byte_is_printable(int b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE; }

// The byte that code point c stands for, or -1 if it stands for none.
static int byte_of_char(uint32_t c) {
    if (c < 0x100) return byte_is_printable((int)c) ? (int)c : -1;
    uint32_t k = c - 0x100; // the k-th of the 68 stand-ins: bytes 0x00-0x20, then 0x7F-0xA0, then 0xAD
    return k < 33 ? (int)k : k < 67 ? (int)(0x7F + k - 33) : k == 67 ? 0xAD : -1;
}

// Writes the raw bytes that the byte-level text s[0..n) stands for into out
// (never longer than s); returns their count, or -1 if a character of s is not
// one of the 256.
static int bytes_of_bytelevel(const char *s, size_t n, char *out) {
    int k = 0;
    for (size_t i = 0; i < n;) {
        int len, b = utf8_char_len((const unsigned char *)s + i, n - i) ? byte_of_char(next_char(s + i, n - i, &len)) : -1;
        if (b < 0) return -1;
        out[k++] = (char)b;
        i += len;
    }
    return k;
}

// The merge rule table's hash of a pair of ids.
static size_t hash_pair(int32_t left, int32_t right) {
    uint64_t h = ((uint64_t)(uint32_t)left << 32 | (uint32_t)right) * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 32);
}

// The rule that merges left with right, or NULL.
static const MergeRule *find_merge(const Tokenizer *t, int left, int right) {
    for (size_t slot = hash_pair(left, right) & t->merge_mask;; slot = (slot + 1) & t->merge_mask) {
        const MergeRule *r = &t->merge[slot];
        if (r->left < 0) return NULL;
        if (r->left == left && r->right == right) return r;
    }
}

// Reads BPE's merge rules, "left right" in byte-level text, most urgent first:
// the two sides and what they make must all be pieces of the vocabulary, as
// Hugging Face's tokenizers require.
static void build_merges(Tokenizer *t, const GGUFVocab *v, const char *path) {
    if (v->n_merges <= 0)
        fatal("%s: the BPE vocabulary has no merges (tokenizer.ggml.merges is missing or empty); byte-level BPE needs "
              "them", path);
    size_t cap = 1, longest = 0;
    while (cap < 2 * (size_t)v->n_merges) cap <<= 1;
    t->merge = xmalloc(cap * sizeof(MergeRule), path);
    memset(t->merge, 0xff, cap * sizeof(MergeRule)); // every slot empty (left -1)
    t->merge_mask = cap - 1;
    for (int r = 0; r < v->n_merges; r++) longest = v->merge_len[r] > longest ? v->merge_len[r] : longest;
    char *bytes = xmalloc(longest + 1, path), shown_text[44];
    for (int r = 0; r < v->n_merges; r++) {
        const char *s = v->merge[r];
        size_t len = v->merge_len[r];
        const char *space = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL; // a side is never empty
        if (!space || space + 1 == s + len)
            fatal("%s: BPE merge %d '%s' is not two tokens separated by a space", path, r, shown(s, len, shown_text));
        int left_len = bytes_of_bytelevel(s, space - s, bytes);
        int right_len = left_len < 0 ? -1 : bytes_of_bytelevel(space + 1, s + len - space - 1, bytes + left_len);
        int left = left_len < 0 ? -1 : lookup_piece(t, bytes, left_len);
        int right = right_len < 0 ? -1 : lookup_piece(t, bytes + left_len, right_len);
        int merged = right < 0 ? -1 : lookup_piece(t, bytes, left_len + right_len);
        if (left < 0 || right < 0 || merged < 0)
            fatal("%s: BPE merge %d '%s' names or makes a token that is not in the vocabulary", path, r,
                  shown(s, len, shown_text));
        size_t slot = hash_pair(left, right) & t->merge_mask;
        while (t->merge[slot].left >= 0 && !(t->merge[slot].left == left && t->merge[slot].right == right))
            slot = (slot + 1) & t->merge_mask;
        if (t->merge[slot].left < 0) t->merge[slot] = (MergeRule){left, right, r, merged}; // a repeat: the first wins
    }
    free(bytes);
}

// Builds a tokenizer from a vocabulary as GGUF files hold it: SentencePiece's
// pieces with U+2581 for a space (written ' ' here), scores and types; or
// byte-level BPE's pieces (turned into the raw bytes they stand for; added
// tokens such as <|eot_id|> are written as themselves), types and merges.
static void build_tokenizer_from_vocab(Tokenizer *t, const GGUFVocab *v, const char *path) {
    int n = v->n;
    size_t text_bytes = 0;
    for (int i = 0; i < n; i++) text_bytes += v->piece_len[i] + 1;
    alloc_tokenizer(t, n, text_bytes, path);
    t->bpe = v->bpe;
    t->unk_id = v->unk_id, t->bos_id = v->bos_id, t->eos_id = v->eos_id;
    t->add_dummy_prefix = v->add_space_prefix, t->remove_extra_whitespaces = v->remove_extra_whitespaces;
    t->add_bos = v->add_bos && v->bos_id >= 0, t->ignore_merges = v->ignore_merges;
    char *text = t->text_storage;
    for (int i = 0; i < n; i++) {
        size_t len = v->piece_len[i], out = 0;
        const char *s = v->piece[i];
        // GGUF's types are 1..6; anything else is a piece text never becomes, nor prints.
        int32_t type = v->type ? v->type[i] : PIECE_NORMAL;
        t->type[i] = (uint8_t)(type >= PIECE_NORMAL && type <= PIECE_BYTE ? type : PIECE_UNUSED);
        int bytes = t->bpe && t->type[i] == PIECE_NORMAL ? bytes_of_bytelevel(s, len, text) : -1;
        if (bytes >= 0) {
            out = (size_t)bytes;
        } else if (t->bpe) { // an added token, or a piece outside the alphabet: its text as it is
            memcpy(text, s, len), out = len;
        } else {
            for (size_t k = 0; k < len; k++) { // U+2581 (3 bytes) becomes ' ' (1 byte): never longer
                if (k + 3 <= len && memcmp(s + k, "\xE2\x96\x81", 3) == 0) text[out++] = ' ', k += 2;
                else text[out++] = s[k];
            }
        }
        text[out] = '\0';
        t->piece[i] = text;
        t->piece_len[i] = (int)out;
        t->score[i] = v->score ? v->score[i] : 0.0f;
        text += out + 1;
    }
    if (!v->type) guess_types(t);
    index_tokenizer(t, path);
    if (t->bpe) build_merges(t, v, path);
    int named[3] = {v->eos_id, v->eot_id, v->eom_id};
    find_end_tokens(t, named, 3);
}

static void free_tokenizer(Tokenizer *t) {
    free(t->piece);
    free(t->piece_len);
    free(t->score);
    free(t->type);
    free(t->byte_value);
    free(t->text_storage);
    free(t->lookup);
    free(t->merge);
    free(t->user_piece);
}

// Whether token ends the text: the model says it is done.
static int ends_text(const Tokenizer *t, int token) {
    for (int i = 0; i < t->n_end; i++)
        if (t->end_id[i] == token) return 1;
    return token == t->bos_id; // <s> starts another text, as llama2.c reads it
}

// ----------------------------------------------------------------------------
// Encoding
//
// Both kinds of BPE work the same way once the text is cut into symbols: merge
// adjacent pairs, best first, until no pair can merge. What "best" means differs:
// SentencePiece merges the pair whose concatenation is the piece with the highest
// score; byte-level BPE the pair whose merge rule comes first in its list.

// A symbol is a run of the text, start..start+len; merged symbols stay
// contiguous, so a pair's text is simply the span covering both.
typedef struct {
    int start, len;
    int prev, next; // neighbours in the list of live symbols, -1 at the ends
    int frozen;     // a user-defined piece: never merged
    int id;         // byte-level BPE: the token this symbol is
} Symbol;

// A candidate merge of symbol `left` with its right neighbour.
typedef struct {
    float score; // SentencePiece: the piece's score; BPE: minus the rule's rank (exact: ranks < 2^24)
    int left, right;
    int len; // left.len + right.len when queued; a mismatch later means stale
    int id;  // the piece the merge makes
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

// Queues the merge of symbol `left` with its right neighbour, if they can merge.
static void queue_pair(const Tokenizer *t, const char *text, const Symbol *sym, MergeQueue *q, int left) {
    if (left < 0 || sym[left].next < 0) return;
    int right = sym[left].next;
    if (sym[left].frozen || sym[right].frozen) return;
    int len = sym[left].len + sym[right].len;
    if (t->bpe) {
        const MergeRule *rule = find_merge(t, sym[left].id, sym[right].id);
        if (rule) queue_push(q, (MergeCandidate){-(float)rule->rank, left, right, len, rule->merged});
        return;
    }
    int id = lookup_piece(t, text + sym[left].start, len);
    if (id >= 0) queue_push(q, (MergeCandidate){t->score[id], left, right, len, id});
}

// Merges the best pair of the n_sym symbols (sym[0] first) until none is left.
// Each merge queues the two new pairs it creates; queued pairs that a merge has
// since changed are stale, and skipped.
static void merge_symbols(const Tokenizer *t, const char *text, Symbol *sym, int n_sym, MergeQueue *queue) {
    queue->n = 0;
    for (int i = 0; i + 1 < n_sym; i++) queue_pair(t, text, sym, queue, i);
    while (queue->n > 0) {
        MergeCandidate c = queue_pop(queue);
        Symbol *l = &sym[c.left], *r = &sym[c.right];
        if (l->len == 0 || r->len == 0 || l->next != c.right || l->len + r->len != c.len) continue;
        l->len += r->len;
        l->id = c.id;
        r->len = 0; // dead
        l->next = r->next;
        if (l->next >= 0) sym[l->next].prev = c.left;
        queue_pair(t, text, sym, queue, l->prev);
        queue_pair(t, text, sym, queue, c.left);
    }
}

// The longest user-defined piece that s[0..n) starts with and that is at least
// cl bytes long (the character there), or -1.
static int user_piece_at(const Tokenizer *t, const char *s, size_t n, int cl) {
    int best = -1;
    for (int u = 0; u < t->n_user; u++) {
        int id = t->user_piece[u], len = t->piece_len[id];
        if (len >= cl && (best < 0 || len > t->piece_len[best]) && (size_t)len <= n && memcmp(s, t->piece[id], len) == 0)
            best = id;
    }
    return best;
}

// --- SentencePiece

static const char meta_space[] = "\xE2\x96\x81"; // U+2581, SentencePiece's space

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

// Steps 1 to 4 on len bytes of text; the ids go to tokens[n...] (room for one
// per byte of the normalized text), and the new count is returned.
static int encode_sentencepiece(const Tokenizer *t, const char *text, size_t len, int *tokens, int n) {
    size_t norm_len;
    char *norm = normalize(t, text, len, &norm_len);
    // Step 2: one symbol per character, or per user-defined piece (the longest that matches here).
    Symbol *sym = xmalloc((norm_len + 1) * sizeof(Symbol), "the text to encode");
    int n_sym = 0;
    for (size_t i = 0; i < norm_len; n_sym++) {
        int cl = utf8_char_len((const unsigned char *)norm + i, norm_len - i); // valid after normalize
        int user = user_piece_at(t, norm + i, norm_len - i, cl);
        if (user >= 0) cl = t->piece_len[user];
        sym[n_sym] = (Symbol){(int)i, cl, n_sym - 1, -1, user >= 0, -1};
        if (n_sym > 0) sym[n_sym - 1].next = n_sym;
        i += cl;
    }

    // Step 3.
    MergeQueue queue = {0};
    merge_symbols(t, norm, sym, n_sym, &queue);
    free(queue.items);

    // Step 4: emit ids; a symbol that is not a piece becomes bytes, or, where the
    // vocabulary lacks them, <unk>: one for a whole run of such symbols, as SentencePiece does.
    int in_unknown = 0;
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
    free(sym);
    free(norm);
    return n;
}

// --- Byte-level BPE

// The classes of characters Llama 3's pre-tokenizer tells apart: \p{L}, \p{N},
// \s, and everything else. From the Unicode table at the end of this file.
typedef enum { CHAR_OTHER, CHAR_LETTER, CHAR_NUMBER, CHAR_SPACE } CharClass;
static CharClass char_class(uint32_t c);

// Steps over characters of class cls from s[at], at most max of them; returns where it stopped.
static size_t skip_class(const char *s, size_t n, size_t at, CharClass cls, int max) {
    int len;
    for (int k = 0; at < n && k < max && char_class(next_char(s + at, n - at, &len)) == cls; k++) at += len;
    return at;
}

static int is_line_break(uint32_t c) { return c == '\r' || c == '\n'; }

// Step 2: the length in bytes of the word at the start of s[0..n) (n > 0),
// by the regular expression of Llama 3's tokenizer.json, whose alternatives
// are tried in order and the first that matches wins:
//     (?i:'s|'t|'re|'ve|'m|'ll|'d)       contractions, in either case
//   | [^\r\n\p{L}\p{N}]?\p{L}+           letters, maybe one other character before them
//   | \p{N}{1,3}                         up to 3 digits
//   |  ?[^\s\p{L}\p{N}]+[\r\n]*          punctuation, maybe a space before, line breaks after
//   | \s*[\r\n]+                         whitespace up to its last line break
//   | \s+(?!\S)                          whitespace not followed by a non-space
//   | \s+                                whitespace
static size_t llama3_word(const char *s, size_t n) {
    int len0, len;
    uint32_t c0 = next_char(s, n, &len0);
    CharClass k0 = char_class(c0);
    if (c0 == '\'') {
        static const char *const suffix[] = {"s", "t", "re", "ve", "m", "ll", "d"};
        for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
            size_t k = strlen(suffix[i]), j = 0;
            while (j < k && j + 1 < n && (s[j + 1] | 0x20) == suffix[i][j]) j++; // | 0x20: ASCII lower case
            if (j == k) return 1 + k;
        }
    }
    size_t at = 0; // where the letters begin
    if (k0 != CHAR_LETTER && k0 != CHAR_NUMBER && !is_line_break(c0) && (size_t)len0 < n &&
        char_class(next_char(s + len0, n - len0, &len)) == CHAR_LETTER)
        at = len0;
    if (k0 == CHAR_LETTER || at > 0) return skip_class(s, n, at, CHAR_LETTER, INT_MAX);
    if (k0 == CHAR_NUMBER) return skip_class(s, n, 0, CHAR_NUMBER, 3);
    at = c0 == ' ' && n > 1 && char_class(next_char(s + 1, n - 1, &len)) == CHAR_OTHER; // the one space
    if (k0 == CHAR_OTHER || at > 0) {
        size_t end = skip_class(s, n, at, CHAR_OTHER, INT_MAX);
        while (end < n && is_line_break((unsigned char)s[end])) end++;
        return end;
    }
    // Whitespace: measure the run, and where its last line break ends.
    size_t end = 0, after_break = 0, last = 0;
    while (end < n) {
        uint32_t c = next_char(s + end, n - end, &len);
        if (char_class(c) != CHAR_SPACE) break;
        last = end;
        end += len;
        if (is_line_break(c)) after_break = end;
    }
    if (after_break > 0) return after_break;
    // A non-space follows: the run's last character goes with the word after it, if
    // the run has more than one (\s+(?!\S) backs off one character; \s+ takes a lone one).
    return end < n && last > 0 ? last : end;
}

// Step 3 for the word s[0..n): its ids into out (at most n of them); returns how many.
static int bpe_word(const Tokenizer *t, const char *s, int n, int *out, Symbol *sym, MergeQueue *queue) {
    int id = t->ignore_merges ? lookup_piece(t, s, n) : -1;
    if (id >= 0) {
        out[0] = id;
        return 1;
    }
    for (int i = 0; i < n; i++) sym[i] = (Symbol){i, 1, i - 1, i + 1 < n ? i + 1 : -1, 0, t->byte_token[(unsigned char)s[i]]};
    merge_symbols(t, s, sym, n, queue);
    int k = 0;
    for (int i = 0; i >= 0; i = sym[i].next) out[k++] = sym[i].id;
    return k;
}

// Steps 1 to 3 on len bytes of text; the ids go to tokens[n...] (room for one
// per byte of the text with invalid bytes replaced), and the new count is returned.
static int encode_bpe(const Tokenizer *t, const char *text, size_t len, int *tokens, int n) {
    size_t clean_len;
    char *clean = replace_invalid_utf8(text, len, &clean_len);
    Symbol *sym = xmalloc((clean_len + 1) * sizeof(Symbol), "the text to encode");
    MergeQueue queue = {0};
    for (size_t i = 0; i < clean_len;) {
        // The text up to the next user-defined piece is cut into words.
        size_t end = i;
        int user = -1, cl;
        for (; end < clean_len; end += cl) {
            cl = utf8_char_len((const unsigned char *)clean + end, clean_len - end);
            if ((user = user_piece_at(t, clean + end, clean_len - end, cl)) >= 0) break;
        }
        for (size_t w = i, word; w < end; w += word) {
            word = llama3_word(clean + w, end - w);
            n += bpe_word(t, clean + w, (int)word, tokens + n, sym, &queue);
        }
        if (user >= 0) tokens[n++] = user, end += t->piece_len[user];
        i = end;
    }
    free(queue.items);
    free(sym);
    free(clean);
    return n;
}

// Encodes len bytes of text into a new array of ids (the caller frees it),
// with <s> first if bos and </s> last if eos (where the vocabulary has them).
// Any bytes are accepted.
static int *encode(const Tokenizer *t, const char *text, size_t len, int bos, int eos, int *n_tokens) {
    if (len > (size_t)INT32_MAX / 8) fatal("text of %zu bytes is too long to encode", len);
    int *tokens = xmalloc((3 * len + 3) * sizeof(int), "the text to encode"); // one id per byte at most, plus <s> and </s>
    int n = 0;
    if (bos && t->bos_id >= 0) tokens[n++] = t->bos_id;
    n = t->bpe ? encode_bpe(t, text, len, tokens, n) : encode_sentencepiece(t, text, len, tokens, n);
    if (eos && t->eos_id >= 0) tokens[n++] = t->eos_id;
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
// and a byte-level BPE piece may end or begin in the middle of a character,
// so bytes are held until they complete a UTF-8 character; bytes that cannot
// (a stray continuation byte, a character cut short) print as U+FFFD: one
// per byte, as SentencePiece's decoder does, or for byte-level BPE one per
// broken sequence, as Hugging Face's decoder (Python's bytes.decode with
// errors="replace") does. Control bytes other than whitespace are not
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
    int per_sequence;         // one U+FFFD per broken sequence (byte-level BPE), not per byte
} Printer;

static Printer make_printer(FILE *out, const char *const *stops, int n_stops) {
    Printer p = {out, {0}, 0, stops, n_stops, NULL, 0, 0, 0, 0, 0};
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
        if (cl == 0) { // broken: the first byte, or the longest start of a character that cannot go on
            cl = 1;
            while (p->per_sequence && cl < p->n_pending && utf8_is_valid_prefix(p->pending, cl + 1)) cl++;
            put_text(p, replacement_char, 3);
        } else {
            put_text(p, (const char *)p->pending, cl);
        }
        p->n_pending -= cl;
        memmove(p->pending, p->pending + cl, p->n_pending);
    }
}

// prev is the token before this one (after <s>, a piece drops its leading space).
static void print_token(Printer *p, const Tokenizer *t, int prev, int token) {
    if (prev == t->bos_id) p->at_start = 1;
    if (t->type[token] == PIECE_CONTROL || t->type[token] == PIECE_UNUSED) return; // <s>, <|eot_id|>: not text
    if (t->bpe) { // every piece is raw bytes, and a character may be split across pieces
        p->per_sequence = 1;
        for (int i = 0; i < t->piece_len[token]; i++) {
            p->pending[p->n_pending++] = (unsigned char)t->piece[token][i];
            drain_pending(p, 0);
        }
        return;
    }
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

// ----------------------------------------------------------------------------
// Unicode classes, for Llama 3's pre-tokenizer

enum { CP_LETTER = CHAR_LETTER, CP_NUMBER = CHAR_NUMBER, CP_SPACE = CHAR_SPACE }; // the table's names

// BEGIN unicode table: generated by tools/unicode_tables.py; do not edit
// Unicode 15.0.0: 806 runs of letters (L*), numbers (N*) and White_Space, by first code point.
static const struct {
    uint32_t first, last;
    uint8_t cls;
} unicode_runs[] = {
    {0x9, 0xD, CP_SPACE}, {0x20, 0x20, CP_SPACE}, {0x30, 0x39, CP_NUMBER}, {0x41, 0x5A, CP_LETTER},
    {0x61, 0x7A, CP_LETTER}, {0x85, 0x85, CP_SPACE}, {0xA0, 0xA0, CP_SPACE}, {0xAA, 0xAA, CP_LETTER},
    {0xB2, 0xB3, CP_NUMBER}, {0xB5, 0xB5, CP_LETTER}, {0xB9, 0xB9, CP_NUMBER}, {0xBA, 0xBA, CP_LETTER},
    {0xBC, 0xBE, CP_NUMBER}, {0xC0, 0xD6, CP_LETTER}, {0xD8, 0xF6, CP_LETTER}, {0xF8, 0x2C1, CP_LETTER},
    {0x2C6, 0x2D1, CP_LETTER}, {0x2E0, 0x2E4, CP_LETTER}, {0x2EC, 0x2EC, CP_LETTER}, {0x2EE, 0x2EE, CP_LETTER},
    {0x370, 0x374, CP_LETTER}, {0x376, 0x377, CP_LETTER}, {0x37A, 0x37D, CP_LETTER}, {0x37F, 0x37F, CP_LETTER},
    {0x386, 0x386, CP_LETTER}, {0x388, 0x38A, CP_LETTER}, {0x38C, 0x38C, CP_LETTER}, {0x38E, 0x3A1, CP_LETTER},
    {0x3A3, 0x3F5, CP_LETTER}, {0x3F7, 0x481, CP_LETTER}, {0x48A, 0x52F, CP_LETTER}, {0x531, 0x556, CP_LETTER},
    {0x559, 0x559, CP_LETTER}, {0x560, 0x588, CP_LETTER}, {0x5D0, 0x5EA, CP_LETTER}, {0x5EF, 0x5F2, CP_LETTER},
    {0x620, 0x64A, CP_LETTER}, {0x660, 0x669, CP_NUMBER}, {0x66E, 0x66F, CP_LETTER}, {0x671, 0x6D3, CP_LETTER},
    {0x6D5, 0x6D5, CP_LETTER}, {0x6E5, 0x6E6, CP_LETTER}, {0x6EE, 0x6EF, CP_LETTER}, {0x6F0, 0x6F9, CP_NUMBER},
    {0x6FA, 0x6FC, CP_LETTER}, {0x6FF, 0x6FF, CP_LETTER}, {0x710, 0x710, CP_LETTER}, {0x712, 0x72F, CP_LETTER},
    {0x74D, 0x7A5, CP_LETTER}, {0x7B1, 0x7B1, CP_LETTER}, {0x7C0, 0x7C9, CP_NUMBER}, {0x7CA, 0x7EA, CP_LETTER},
    {0x7F4, 0x7F5, CP_LETTER}, {0x7FA, 0x7FA, CP_LETTER}, {0x800, 0x815, CP_LETTER}, {0x81A, 0x81A, CP_LETTER},
    {0x824, 0x824, CP_LETTER}, {0x828, 0x828, CP_LETTER}, {0x840, 0x858, CP_LETTER}, {0x860, 0x86A, CP_LETTER},
    {0x870, 0x887, CP_LETTER}, {0x889, 0x88E, CP_LETTER}, {0x8A0, 0x8C9, CP_LETTER}, {0x904, 0x939, CP_LETTER},
    {0x93D, 0x93D, CP_LETTER}, {0x950, 0x950, CP_LETTER}, {0x958, 0x961, CP_LETTER}, {0x966, 0x96F, CP_NUMBER},
    {0x971, 0x980, CP_LETTER}, {0x985, 0x98C, CP_LETTER}, {0x98F, 0x990, CP_LETTER}, {0x993, 0x9A8, CP_LETTER},
    {0x9AA, 0x9B0, CP_LETTER}, {0x9B2, 0x9B2, CP_LETTER}, {0x9B6, 0x9B9, CP_LETTER}, {0x9BD, 0x9BD, CP_LETTER},
    {0x9CE, 0x9CE, CP_LETTER}, {0x9DC, 0x9DD, CP_LETTER}, {0x9DF, 0x9E1, CP_LETTER}, {0x9E6, 0x9EF, CP_NUMBER},
    {0x9F0, 0x9F1, CP_LETTER}, {0x9F4, 0x9F9, CP_NUMBER}, {0x9FC, 0x9FC, CP_LETTER}, {0xA05, 0xA0A, CP_LETTER},
    {0xA0F, 0xA10, CP_LETTER}, {0xA13, 0xA28, CP_LETTER}, {0xA2A, 0xA30, CP_LETTER}, {0xA32, 0xA33, CP_LETTER},
    {0xA35, 0xA36, CP_LETTER}, {0xA38, 0xA39, CP_LETTER}, {0xA59, 0xA5C, CP_LETTER}, {0xA5E, 0xA5E, CP_LETTER},
    {0xA66, 0xA6F, CP_NUMBER}, {0xA72, 0xA74, CP_LETTER}, {0xA85, 0xA8D, CP_LETTER}, {0xA8F, 0xA91, CP_LETTER},
    {0xA93, 0xAA8, CP_LETTER}, {0xAAA, 0xAB0, CP_LETTER}, {0xAB2, 0xAB3, CP_LETTER}, {0xAB5, 0xAB9, CP_LETTER},
    {0xABD, 0xABD, CP_LETTER}, {0xAD0, 0xAD0, CP_LETTER}, {0xAE0, 0xAE1, CP_LETTER}, {0xAE6, 0xAEF, CP_NUMBER},
    {0xAF9, 0xAF9, CP_LETTER}, {0xB05, 0xB0C, CP_LETTER}, {0xB0F, 0xB10, CP_LETTER}, {0xB13, 0xB28, CP_LETTER},
    {0xB2A, 0xB30, CP_LETTER}, {0xB32, 0xB33, CP_LETTER}, {0xB35, 0xB39, CP_LETTER}, {0xB3D, 0xB3D, CP_LETTER},
    {0xB5C, 0xB5D, CP_LETTER}, {0xB5F, 0xB61, CP_LETTER}, {0xB66, 0xB6F, CP_NUMBER}, {0xB71, 0xB71, CP_LETTER},
    {0xB72, 0xB77, CP_NUMBER}, {0xB83, 0xB83, CP_LETTER}, {0xB85, 0xB8A, CP_LETTER}, {0xB8E, 0xB90, CP_LETTER},
    {0xB92, 0xB95, CP_LETTER}, {0xB99, 0xB9A, CP_LETTER}, {0xB9C, 0xB9C, CP_LETTER}, {0xB9E, 0xB9F, CP_LETTER},
    {0xBA3, 0xBA4, CP_LETTER}, {0xBA8, 0xBAA, CP_LETTER}, {0xBAE, 0xBB9, CP_LETTER}, {0xBD0, 0xBD0, CP_LETTER},
    {0xBE6, 0xBF2, CP_NUMBER}, {0xC05, 0xC0C, CP_LETTER}, {0xC0E, 0xC10, CP_LETTER}, {0xC12, 0xC28, CP_LETTER},
    {0xC2A, 0xC39, CP_LETTER}, {0xC3D, 0xC3D, CP_LETTER}, {0xC58, 0xC5A, CP_LETTER}, {0xC5D, 0xC5D, CP_LETTER},
    {0xC60, 0xC61, CP_LETTER}, {0xC66, 0xC6F, CP_NUMBER}, {0xC78, 0xC7E, CP_NUMBER}, {0xC80, 0xC80, CP_LETTER},
    {0xC85, 0xC8C, CP_LETTER}, {0xC8E, 0xC90, CP_LETTER}, {0xC92, 0xCA8, CP_LETTER}, {0xCAA, 0xCB3, CP_LETTER},
    {0xCB5, 0xCB9, CP_LETTER}, {0xCBD, 0xCBD, CP_LETTER}, {0xCDD, 0xCDE, CP_LETTER}, {0xCE0, 0xCE1, CP_LETTER},
    {0xCE6, 0xCEF, CP_NUMBER}, {0xCF1, 0xCF2, CP_LETTER}, {0xD04, 0xD0C, CP_LETTER}, {0xD0E, 0xD10, CP_LETTER},
    {0xD12, 0xD3A, CP_LETTER}, {0xD3D, 0xD3D, CP_LETTER}, {0xD4E, 0xD4E, CP_LETTER}, {0xD54, 0xD56, CP_LETTER},
    {0xD58, 0xD5E, CP_NUMBER}, {0xD5F, 0xD61, CP_LETTER}, {0xD66, 0xD78, CP_NUMBER}, {0xD7A, 0xD7F, CP_LETTER},
    {0xD85, 0xD96, CP_LETTER}, {0xD9A, 0xDB1, CP_LETTER}, {0xDB3, 0xDBB, CP_LETTER}, {0xDBD, 0xDBD, CP_LETTER},
    {0xDC0, 0xDC6, CP_LETTER}, {0xDE6, 0xDEF, CP_NUMBER}, {0xE01, 0xE30, CP_LETTER}, {0xE32, 0xE33, CP_LETTER},
    {0xE40, 0xE46, CP_LETTER}, {0xE50, 0xE59, CP_NUMBER}, {0xE81, 0xE82, CP_LETTER}, {0xE84, 0xE84, CP_LETTER},
    {0xE86, 0xE8A, CP_LETTER}, {0xE8C, 0xEA3, CP_LETTER}, {0xEA5, 0xEA5, CP_LETTER}, {0xEA7, 0xEB0, CP_LETTER},
    {0xEB2, 0xEB3, CP_LETTER}, {0xEBD, 0xEBD, CP_LETTER}, {0xEC0, 0xEC4, CP_LETTER}, {0xEC6, 0xEC6, CP_LETTER},
    {0xED0, 0xED9, CP_NUMBER}, {0xEDC, 0xEDF, CP_LETTER}, {0xF00, 0xF00, CP_LETTER}, {0xF20, 0xF33, CP_NUMBER},
    {0xF40, 0xF47, CP_LETTER}, {0xF49, 0xF6C, CP_LETTER}, {0xF88, 0xF8C, CP_LETTER}, {0x1000, 0x102A, CP_LETTER},
    {0x103F, 0x103F, CP_LETTER}, {0x1040, 0x1049, CP_NUMBER}, {0x1050, 0x1055, CP_LETTER}, {0x105A, 0x105D, CP_LETTER},
    {0x1061, 0x1061, CP_LETTER}, {0x1065, 0x1066, CP_LETTER}, {0x106E, 0x1070, CP_LETTER}, {0x1075, 0x1081, CP_LETTER},
    {0x108E, 0x108E, CP_LETTER}, {0x1090, 0x1099, CP_NUMBER}, {0x10A0, 0x10C5, CP_LETTER}, {0x10C7, 0x10C7, CP_LETTER},
    {0x10CD, 0x10CD, CP_LETTER}, {0x10D0, 0x10FA, CP_LETTER}, {0x10FC, 0x1248, CP_LETTER}, {0x124A, 0x124D, CP_LETTER},
    {0x1250, 0x1256, CP_LETTER}, {0x1258, 0x1258, CP_LETTER}, {0x125A, 0x125D, CP_LETTER}, {0x1260, 0x1288, CP_LETTER},
    {0x128A, 0x128D, CP_LETTER}, {0x1290, 0x12B0, CP_LETTER}, {0x12B2, 0x12B5, CP_LETTER}, {0x12B8, 0x12BE, CP_LETTER},
    {0x12C0, 0x12C0, CP_LETTER}, {0x12C2, 0x12C5, CP_LETTER}, {0x12C8, 0x12D6, CP_LETTER}, {0x12D8, 0x1310, CP_LETTER},
    {0x1312, 0x1315, CP_LETTER}, {0x1318, 0x135A, CP_LETTER}, {0x1369, 0x137C, CP_NUMBER}, {0x1380, 0x138F, CP_LETTER},
    {0x13A0, 0x13F5, CP_LETTER}, {0x13F8, 0x13FD, CP_LETTER}, {0x1401, 0x166C, CP_LETTER}, {0x166F, 0x167F, CP_LETTER},
    {0x1680, 0x1680, CP_SPACE}, {0x1681, 0x169A, CP_LETTER}, {0x16A0, 0x16EA, CP_LETTER}, {0x16EE, 0x16F0, CP_NUMBER},
    {0x16F1, 0x16F8, CP_LETTER}, {0x1700, 0x1711, CP_LETTER}, {0x171F, 0x1731, CP_LETTER}, {0x1740, 0x1751, CP_LETTER},
    {0x1760, 0x176C, CP_LETTER}, {0x176E, 0x1770, CP_LETTER}, {0x1780, 0x17B3, CP_LETTER}, {0x17D7, 0x17D7, CP_LETTER},
    {0x17DC, 0x17DC, CP_LETTER}, {0x17E0, 0x17E9, CP_NUMBER}, {0x17F0, 0x17F9, CP_NUMBER}, {0x1810, 0x1819, CP_NUMBER},
    {0x1820, 0x1878, CP_LETTER}, {0x1880, 0x1884, CP_LETTER}, {0x1887, 0x18A8, CP_LETTER}, {0x18AA, 0x18AA, CP_LETTER},
    {0x18B0, 0x18F5, CP_LETTER}, {0x1900, 0x191E, CP_LETTER}, {0x1946, 0x194F, CP_NUMBER}, {0x1950, 0x196D, CP_LETTER},
    {0x1970, 0x1974, CP_LETTER}, {0x1980, 0x19AB, CP_LETTER}, {0x19B0, 0x19C9, CP_LETTER}, {0x19D0, 0x19DA, CP_NUMBER},
    {0x1A00, 0x1A16, CP_LETTER}, {0x1A20, 0x1A54, CP_LETTER}, {0x1A80, 0x1A89, CP_NUMBER}, {0x1A90, 0x1A99, CP_NUMBER},
    {0x1AA7, 0x1AA7, CP_LETTER}, {0x1B05, 0x1B33, CP_LETTER}, {0x1B45, 0x1B4C, CP_LETTER}, {0x1B50, 0x1B59, CP_NUMBER},
    {0x1B83, 0x1BA0, CP_LETTER}, {0x1BAE, 0x1BAF, CP_LETTER}, {0x1BB0, 0x1BB9, CP_NUMBER}, {0x1BBA, 0x1BE5, CP_LETTER},
    {0x1C00, 0x1C23, CP_LETTER}, {0x1C40, 0x1C49, CP_NUMBER}, {0x1C4D, 0x1C4F, CP_LETTER}, {0x1C50, 0x1C59, CP_NUMBER},
    {0x1C5A, 0x1C7D, CP_LETTER}, {0x1C80, 0x1C88, CP_LETTER}, {0x1C90, 0x1CBA, CP_LETTER}, {0x1CBD, 0x1CBF, CP_LETTER},
    {0x1CE9, 0x1CEC, CP_LETTER}, {0x1CEE, 0x1CF3, CP_LETTER}, {0x1CF5, 0x1CF6, CP_LETTER}, {0x1CFA, 0x1CFA, CP_LETTER},
    {0x1D00, 0x1DBF, CP_LETTER}, {0x1E00, 0x1F15, CP_LETTER}, {0x1F18, 0x1F1D, CP_LETTER}, {0x1F20, 0x1F45, CP_LETTER},
    {0x1F48, 0x1F4D, CP_LETTER}, {0x1F50, 0x1F57, CP_LETTER}, {0x1F59, 0x1F59, CP_LETTER}, {0x1F5B, 0x1F5B, CP_LETTER},
    {0x1F5D, 0x1F5D, CP_LETTER}, {0x1F5F, 0x1F7D, CP_LETTER}, {0x1F80, 0x1FB4, CP_LETTER}, {0x1FB6, 0x1FBC, CP_LETTER},
    {0x1FBE, 0x1FBE, CP_LETTER}, {0x1FC2, 0x1FC4, CP_LETTER}, {0x1FC6, 0x1FCC, CP_LETTER}, {0x1FD0, 0x1FD3, CP_LETTER},
    {0x1FD6, 0x1FDB, CP_LETTER}, {0x1FE0, 0x1FEC, CP_LETTER}, {0x1FF2, 0x1FF4, CP_LETTER}, {0x1FF6, 0x1FFC, CP_LETTER},
    {0x2000, 0x200A, CP_SPACE}, {0x2028, 0x2029, CP_SPACE}, {0x202F, 0x202F, CP_SPACE}, {0x205F, 0x205F, CP_SPACE},
    {0x2070, 0x2070, CP_NUMBER}, {0x2071, 0x2071, CP_LETTER}, {0x2074, 0x2079, CP_NUMBER}, {0x207F, 0x207F, CP_LETTER},
    {0x2080, 0x2089, CP_NUMBER}, {0x2090, 0x209C, CP_LETTER}, {0x2102, 0x2102, CP_LETTER}, {0x2107, 0x2107, CP_LETTER},
    {0x210A, 0x2113, CP_LETTER}, {0x2115, 0x2115, CP_LETTER}, {0x2119, 0x211D, CP_LETTER}, {0x2124, 0x2124, CP_LETTER},
    {0x2126, 0x2126, CP_LETTER}, {0x2128, 0x2128, CP_LETTER}, {0x212A, 0x212D, CP_LETTER}, {0x212F, 0x2139, CP_LETTER},
    {0x213C, 0x213F, CP_LETTER}, {0x2145, 0x2149, CP_LETTER}, {0x214E, 0x214E, CP_LETTER}, {0x2150, 0x2182, CP_NUMBER},
    {0x2183, 0x2184, CP_LETTER}, {0x2185, 0x2189, CP_NUMBER}, {0x2460, 0x249B, CP_NUMBER}, {0x24EA, 0x24FF, CP_NUMBER},
    {0x2776, 0x2793, CP_NUMBER}, {0x2C00, 0x2CE4, CP_LETTER}, {0x2CEB, 0x2CEE, CP_LETTER}, {0x2CF2, 0x2CF3, CP_LETTER},
    {0x2CFD, 0x2CFD, CP_NUMBER}, {0x2D00, 0x2D25, CP_LETTER}, {0x2D27, 0x2D27, CP_LETTER}, {0x2D2D, 0x2D2D, CP_LETTER},
    {0x2D30, 0x2D67, CP_LETTER}, {0x2D6F, 0x2D6F, CP_LETTER}, {0x2D80, 0x2D96, CP_LETTER}, {0x2DA0, 0x2DA6, CP_LETTER},
    {0x2DA8, 0x2DAE, CP_LETTER}, {0x2DB0, 0x2DB6, CP_LETTER}, {0x2DB8, 0x2DBE, CP_LETTER}, {0x2DC0, 0x2DC6, CP_LETTER},
    {0x2DC8, 0x2DCE, CP_LETTER}, {0x2DD0, 0x2DD6, CP_LETTER}, {0x2DD8, 0x2DDE, CP_LETTER}, {0x2E2F, 0x2E2F, CP_LETTER},
    {0x3000, 0x3000, CP_SPACE}, {0x3005, 0x3006, CP_LETTER}, {0x3007, 0x3007, CP_NUMBER}, {0x3021, 0x3029, CP_NUMBER},
    {0x3031, 0x3035, CP_LETTER}, {0x3038, 0x303A, CP_NUMBER}, {0x303B, 0x303C, CP_LETTER}, {0x3041, 0x3096, CP_LETTER},
    {0x309D, 0x309F, CP_LETTER}, {0x30A1, 0x30FA, CP_LETTER}, {0x30FC, 0x30FF, CP_LETTER}, {0x3105, 0x312F, CP_LETTER},
    {0x3131, 0x318E, CP_LETTER}, {0x3192, 0x3195, CP_NUMBER}, {0x31A0, 0x31BF, CP_LETTER}, {0x31F0, 0x31FF, CP_LETTER},
    {0x3220, 0x3229, CP_NUMBER}, {0x3248, 0x324F, CP_NUMBER}, {0x3251, 0x325F, CP_NUMBER}, {0x3280, 0x3289, CP_NUMBER},
    {0x32B1, 0x32BF, CP_NUMBER}, {0x3400, 0x4DBF, CP_LETTER}, {0x4E00, 0xA48C, CP_LETTER}, {0xA4D0, 0xA4FD, CP_LETTER},
    {0xA500, 0xA60C, CP_LETTER}, {0xA610, 0xA61F, CP_LETTER}, {0xA620, 0xA629, CP_NUMBER}, {0xA62A, 0xA62B, CP_LETTER},
    {0xA640, 0xA66E, CP_LETTER}, {0xA67F, 0xA69D, CP_LETTER}, {0xA6A0, 0xA6E5, CP_LETTER}, {0xA6E6, 0xA6EF, CP_NUMBER},
    {0xA717, 0xA71F, CP_LETTER}, {0xA722, 0xA788, CP_LETTER}, {0xA78B, 0xA7CA, CP_LETTER}, {0xA7D0, 0xA7D1, CP_LETTER},
    {0xA7D3, 0xA7D3, CP_LETTER}, {0xA7D5, 0xA7D9, CP_LETTER}, {0xA7F2, 0xA801, CP_LETTER}, {0xA803, 0xA805, CP_LETTER},
    {0xA807, 0xA80A, CP_LETTER}, {0xA80C, 0xA822, CP_LETTER}, {0xA830, 0xA835, CP_NUMBER}, {0xA840, 0xA873, CP_LETTER},
    {0xA882, 0xA8B3, CP_LETTER}, {0xA8D0, 0xA8D9, CP_NUMBER}, {0xA8F2, 0xA8F7, CP_LETTER}, {0xA8FB, 0xA8FB, CP_LETTER},
    {0xA8FD, 0xA8FE, CP_LETTER}, {0xA900, 0xA909, CP_NUMBER}, {0xA90A, 0xA925, CP_LETTER}, {0xA930, 0xA946, CP_LETTER},
    {0xA960, 0xA97C, CP_LETTER}, {0xA984, 0xA9B2, CP_LETTER}, {0xA9CF, 0xA9CF, CP_LETTER}, {0xA9D0, 0xA9D9, CP_NUMBER},
    {0xA9E0, 0xA9E4, CP_LETTER}, {0xA9E6, 0xA9EF, CP_LETTER}, {0xA9F0, 0xA9F9, CP_NUMBER}, {0xA9FA, 0xA9FE, CP_LETTER},
    {0xAA00, 0xAA28, CP_LETTER}, {0xAA40, 0xAA42, CP_LETTER}, {0xAA44, 0xAA4B, CP_LETTER}, {0xAA50, 0xAA59, CP_NUMBER},
    {0xAA60, 0xAA76, CP_LETTER}, {0xAA7A, 0xAA7A, CP_LETTER}, {0xAA7E, 0xAAAF, CP_LETTER}, {0xAAB1, 0xAAB1, CP_LETTER},
    {0xAAB5, 0xAAB6, CP_LETTER}, {0xAAB9, 0xAABD, CP_LETTER}, {0xAAC0, 0xAAC0, CP_LETTER}, {0xAAC2, 0xAAC2, CP_LETTER},
    {0xAADB, 0xAADD, CP_LETTER}, {0xAAE0, 0xAAEA, CP_LETTER}, {0xAAF2, 0xAAF4, CP_LETTER}, {0xAB01, 0xAB06, CP_LETTER},
    {0xAB09, 0xAB0E, CP_LETTER}, {0xAB11, 0xAB16, CP_LETTER}, {0xAB20, 0xAB26, CP_LETTER}, {0xAB28, 0xAB2E, CP_LETTER},
    {0xAB30, 0xAB5A, CP_LETTER}, {0xAB5C, 0xAB69, CP_LETTER}, {0xAB70, 0xABE2, CP_LETTER}, {0xABF0, 0xABF9, CP_NUMBER},
    {0xAC00, 0xD7A3, CP_LETTER}, {0xD7B0, 0xD7C6, CP_LETTER}, {0xD7CB, 0xD7FB, CP_LETTER}, {0xF900, 0xFA6D, CP_LETTER},
    {0xFA70, 0xFAD9, CP_LETTER}, {0xFB00, 0xFB06, CP_LETTER}, {0xFB13, 0xFB17, CP_LETTER}, {0xFB1D, 0xFB1D, CP_LETTER},
    {0xFB1F, 0xFB28, CP_LETTER}, {0xFB2A, 0xFB36, CP_LETTER}, {0xFB38, 0xFB3C, CP_LETTER}, {0xFB3E, 0xFB3E, CP_LETTER},
    {0xFB40, 0xFB41, CP_LETTER}, {0xFB43, 0xFB44, CP_LETTER}, {0xFB46, 0xFBB1, CP_LETTER}, {0xFBD3, 0xFD3D, CP_LETTER},
    {0xFD50, 0xFD8F, CP_LETTER}, {0xFD92, 0xFDC7, CP_LETTER}, {0xFDF0, 0xFDFB, CP_LETTER}, {0xFE70, 0xFE74, CP_LETTER},
    {0xFE76, 0xFEFC, CP_LETTER}, {0xFF10, 0xFF19, CP_NUMBER}, {0xFF21, 0xFF3A, CP_LETTER}, {0xFF41, 0xFF5A, CP_LETTER},
    {0xFF66, 0xFFBE, CP_LETTER}, {0xFFC2, 0xFFC7, CP_LETTER}, {0xFFCA, 0xFFCF, CP_LETTER}, {0xFFD2, 0xFFD7, CP_LETTER},
    {0xFFDA, 0xFFDC, CP_LETTER}, {0x10000, 0x1000B, CP_LETTER}, {0x1000D, 0x10026, CP_LETTER},
    {0x10028, 0x1003A, CP_LETTER}, {0x1003C, 0x1003D, CP_LETTER}, {0x1003F, 0x1004D, CP_LETTER},
    {0x10050, 0x1005D, CP_LETTER}, {0x10080, 0x100FA, CP_LETTER}, {0x10107, 0x10133, CP_NUMBER},
    {0x10140, 0x10178, CP_NUMBER}, {0x1018A, 0x1018B, CP_NUMBER}, {0x10280, 0x1029C, CP_LETTER},
    {0x102A0, 0x102D0, CP_LETTER}, {0x102E1, 0x102FB, CP_NUMBER}, {0x10300, 0x1031F, CP_LETTER},
    {0x10320, 0x10323, CP_NUMBER}, {0x1032D, 0x10340, CP_LETTER}, {0x10341, 0x10341, CP_NUMBER},
    {0x10342, 0x10349, CP_LETTER}, {0x1034A, 0x1034A, CP_NUMBER}, {0x10350, 0x10375, CP_LETTER},
    {0x10380, 0x1039D, CP_LETTER}, {0x103A0, 0x103C3, CP_LETTER}, {0x103C8, 0x103CF, CP_LETTER},
    {0x103D1, 0x103D5, CP_NUMBER}, {0x10400, 0x1049D, CP_LETTER}, {0x104A0, 0x104A9, CP_NUMBER},
    {0x104B0, 0x104D3, CP_LETTER}, {0x104D8, 0x104FB, CP_LETTER}, {0x10500, 0x10527, CP_LETTER},
    {0x10530, 0x10563, CP_LETTER}, {0x10570, 0x1057A, CP_LETTER}, {0x1057C, 0x1058A, CP_LETTER},
    {0x1058C, 0x10592, CP_LETTER}, {0x10594, 0x10595, CP_LETTER}, {0x10597, 0x105A1, CP_LETTER},
    {0x105A3, 0x105B1, CP_LETTER}, {0x105B3, 0x105B9, CP_LETTER}, {0x105BB, 0x105BC, CP_LETTER},
    {0x10600, 0x10736, CP_LETTER}, {0x10740, 0x10755, CP_LETTER}, {0x10760, 0x10767, CP_LETTER},
    {0x10780, 0x10785, CP_LETTER}, {0x10787, 0x107B0, CP_LETTER}, {0x107B2, 0x107BA, CP_LETTER},
    {0x10800, 0x10805, CP_LETTER}, {0x10808, 0x10808, CP_LETTER}, {0x1080A, 0x10835, CP_LETTER},
    {0x10837, 0x10838, CP_LETTER}, {0x1083C, 0x1083C, CP_LETTER}, {0x1083F, 0x10855, CP_LETTER},
    {0x10858, 0x1085F, CP_NUMBER}, {0x10860, 0x10876, CP_LETTER}, {0x10879, 0x1087F, CP_NUMBER},
    {0x10880, 0x1089E, CP_LETTER}, {0x108A7, 0x108AF, CP_NUMBER}, {0x108E0, 0x108F2, CP_LETTER},
    {0x108F4, 0x108F5, CP_LETTER}, {0x108FB, 0x108FF, CP_NUMBER}, {0x10900, 0x10915, CP_LETTER},
    {0x10916, 0x1091B, CP_NUMBER}, {0x10920, 0x10939, CP_LETTER}, {0x10980, 0x109B7, CP_LETTER},
    {0x109BC, 0x109BD, CP_NUMBER}, {0x109BE, 0x109BF, CP_LETTER}, {0x109C0, 0x109CF, CP_NUMBER},
    {0x109D2, 0x109FF, CP_NUMBER}, {0x10A00, 0x10A00, CP_LETTER}, {0x10A10, 0x10A13, CP_LETTER},
    {0x10A15, 0x10A17, CP_LETTER}, {0x10A19, 0x10A35, CP_LETTER}, {0x10A40, 0x10A48, CP_NUMBER},
    {0x10A60, 0x10A7C, CP_LETTER}, {0x10A7D, 0x10A7E, CP_NUMBER}, {0x10A80, 0x10A9C, CP_LETTER},
    {0x10A9D, 0x10A9F, CP_NUMBER}, {0x10AC0, 0x10AC7, CP_LETTER}, {0x10AC9, 0x10AE4, CP_LETTER},
    {0x10AEB, 0x10AEF, CP_NUMBER}, {0x10B00, 0x10B35, CP_LETTER}, {0x10B40, 0x10B55, CP_LETTER},
    {0x10B58, 0x10B5F, CP_NUMBER}, {0x10B60, 0x10B72, CP_LETTER}, {0x10B78, 0x10B7F, CP_NUMBER},
    {0x10B80, 0x10B91, CP_LETTER}, {0x10BA9, 0x10BAF, CP_NUMBER}, {0x10C00, 0x10C48, CP_LETTER},
    {0x10C80, 0x10CB2, CP_LETTER}, {0x10CC0, 0x10CF2, CP_LETTER}, {0x10CFA, 0x10CFF, CP_NUMBER},
    {0x10D00, 0x10D23, CP_LETTER}, {0x10D30, 0x10D39, CP_NUMBER}, {0x10E60, 0x10E7E, CP_NUMBER},
    {0x10E80, 0x10EA9, CP_LETTER}, {0x10EB0, 0x10EB1, CP_LETTER}, {0x10F00, 0x10F1C, CP_LETTER},
    {0x10F1D, 0x10F26, CP_NUMBER}, {0x10F27, 0x10F27, CP_LETTER}, {0x10F30, 0x10F45, CP_LETTER},
    {0x10F51, 0x10F54, CP_NUMBER}, {0x10F70, 0x10F81, CP_LETTER}, {0x10FB0, 0x10FC4, CP_LETTER},
    {0x10FC5, 0x10FCB, CP_NUMBER}, {0x10FE0, 0x10FF6, CP_LETTER}, {0x11003, 0x11037, CP_LETTER},
    {0x11052, 0x1106F, CP_NUMBER}, {0x11071, 0x11072, CP_LETTER}, {0x11075, 0x11075, CP_LETTER},
    {0x11083, 0x110AF, CP_LETTER}, {0x110D0, 0x110E8, CP_LETTER}, {0x110F0, 0x110F9, CP_NUMBER},
    {0x11103, 0x11126, CP_LETTER}, {0x11136, 0x1113F, CP_NUMBER}, {0x11144, 0x11144, CP_LETTER},
    {0x11147, 0x11147, CP_LETTER}, {0x11150, 0x11172, CP_LETTER}, {0x11176, 0x11176, CP_LETTER},
    {0x11183, 0x111B2, CP_LETTER}, {0x111C1, 0x111C4, CP_LETTER}, {0x111D0, 0x111D9, CP_NUMBER},
    {0x111DA, 0x111DA, CP_LETTER}, {0x111DC, 0x111DC, CP_LETTER}, {0x111E1, 0x111F4, CP_NUMBER},
    {0x11200, 0x11211, CP_LETTER}, {0x11213, 0x1122B, CP_LETTER}, {0x1123F, 0x11240, CP_LETTER},
    {0x11280, 0x11286, CP_LETTER}, {0x11288, 0x11288, CP_LETTER}, {0x1128A, 0x1128D, CP_LETTER},
    {0x1128F, 0x1129D, CP_LETTER}, {0x1129F, 0x112A8, CP_LETTER}, {0x112B0, 0x112DE, CP_LETTER},
    {0x112F0, 0x112F9, CP_NUMBER}, {0x11305, 0x1130C, CP_LETTER}, {0x1130F, 0x11310, CP_LETTER},
    {0x11313, 0x11328, CP_LETTER}, {0x1132A, 0x11330, CP_LETTER}, {0x11332, 0x11333, CP_LETTER},
    {0x11335, 0x11339, CP_LETTER}, {0x1133D, 0x1133D, CP_LETTER}, {0x11350, 0x11350, CP_LETTER},
    {0x1135D, 0x11361, CP_LETTER}, {0x11400, 0x11434, CP_LETTER}, {0x11447, 0x1144A, CP_LETTER},
    {0x11450, 0x11459, CP_NUMBER}, {0x1145F, 0x11461, CP_LETTER}, {0x11480, 0x114AF, CP_LETTER},
    {0x114C4, 0x114C5, CP_LETTER}, {0x114C7, 0x114C7, CP_LETTER}, {0x114D0, 0x114D9, CP_NUMBER},
    {0x11580, 0x115AE, CP_LETTER}, {0x115D8, 0x115DB, CP_LETTER}, {0x11600, 0x1162F, CP_LETTER},
    {0x11644, 0x11644, CP_LETTER}, {0x11650, 0x11659, CP_NUMBER}, {0x11680, 0x116AA, CP_LETTER},
    {0x116B8, 0x116B8, CP_LETTER}, {0x116C0, 0x116C9, CP_NUMBER}, {0x11700, 0x1171A, CP_LETTER},
    {0x11730, 0x1173B, CP_NUMBER}, {0x11740, 0x11746, CP_LETTER}, {0x11800, 0x1182B, CP_LETTER},
    {0x118A0, 0x118DF, CP_LETTER}, {0x118E0, 0x118F2, CP_NUMBER}, {0x118FF, 0x11906, CP_LETTER},
    {0x11909, 0x11909, CP_LETTER}, {0x1190C, 0x11913, CP_LETTER}, {0x11915, 0x11916, CP_LETTER},
    {0x11918, 0x1192F, CP_LETTER}, {0x1193F, 0x1193F, CP_LETTER}, {0x11941, 0x11941, CP_LETTER},
    {0x11950, 0x11959, CP_NUMBER}, {0x119A0, 0x119A7, CP_LETTER}, {0x119AA, 0x119D0, CP_LETTER},
    {0x119E1, 0x119E1, CP_LETTER}, {0x119E3, 0x119E3, CP_LETTER}, {0x11A00, 0x11A00, CP_LETTER},
    {0x11A0B, 0x11A32, CP_LETTER}, {0x11A3A, 0x11A3A, CP_LETTER}, {0x11A50, 0x11A50, CP_LETTER},
    {0x11A5C, 0x11A89, CP_LETTER}, {0x11A9D, 0x11A9D, CP_LETTER}, {0x11AB0, 0x11AF8, CP_LETTER},
    {0x11C00, 0x11C08, CP_LETTER}, {0x11C0A, 0x11C2E, CP_LETTER}, {0x11C40, 0x11C40, CP_LETTER},
    {0x11C50, 0x11C6C, CP_NUMBER}, {0x11C72, 0x11C8F, CP_LETTER}, {0x11D00, 0x11D06, CP_LETTER},
    {0x11D08, 0x11D09, CP_LETTER}, {0x11D0B, 0x11D30, CP_LETTER}, {0x11D46, 0x11D46, CP_LETTER},
    {0x11D50, 0x11D59, CP_NUMBER}, {0x11D60, 0x11D65, CP_LETTER}, {0x11D67, 0x11D68, CP_LETTER},
    {0x11D6A, 0x11D89, CP_LETTER}, {0x11D98, 0x11D98, CP_LETTER}, {0x11DA0, 0x11DA9, CP_NUMBER},
    {0x11EE0, 0x11EF2, CP_LETTER}, {0x11F02, 0x11F02, CP_LETTER}, {0x11F04, 0x11F10, CP_LETTER},
    {0x11F12, 0x11F33, CP_LETTER}, {0x11F50, 0x11F59, CP_NUMBER}, {0x11FB0, 0x11FB0, CP_LETTER},
    {0x11FC0, 0x11FD4, CP_NUMBER}, {0x12000, 0x12399, CP_LETTER}, {0x12400, 0x1246E, CP_NUMBER},
    {0x12480, 0x12543, CP_LETTER}, {0x12F90, 0x12FF0, CP_LETTER}, {0x13000, 0x1342F, CP_LETTER},
    {0x13441, 0x13446, CP_LETTER}, {0x14400, 0x14646, CP_LETTER}, {0x16800, 0x16A38, CP_LETTER},
    {0x16A40, 0x16A5E, CP_LETTER}, {0x16A60, 0x16A69, CP_NUMBER}, {0x16A70, 0x16ABE, CP_LETTER},
    {0x16AC0, 0x16AC9, CP_NUMBER}, {0x16AD0, 0x16AED, CP_LETTER}, {0x16B00, 0x16B2F, CP_LETTER},
    {0x16B40, 0x16B43, CP_LETTER}, {0x16B50, 0x16B59, CP_NUMBER}, {0x16B5B, 0x16B61, CP_NUMBER},
    {0x16B63, 0x16B77, CP_LETTER}, {0x16B7D, 0x16B8F, CP_LETTER}, {0x16E40, 0x16E7F, CP_LETTER},
    {0x16E80, 0x16E96, CP_NUMBER}, {0x16F00, 0x16F4A, CP_LETTER}, {0x16F50, 0x16F50, CP_LETTER},
    {0x16F93, 0x16F9F, CP_LETTER}, {0x16FE0, 0x16FE1, CP_LETTER}, {0x16FE3, 0x16FE3, CP_LETTER},
    {0x17000, 0x187F7, CP_LETTER}, {0x18800, 0x18CD5, CP_LETTER}, {0x18D00, 0x18D08, CP_LETTER},
    {0x1AFF0, 0x1AFF3, CP_LETTER}, {0x1AFF5, 0x1AFFB, CP_LETTER}, {0x1AFFD, 0x1AFFE, CP_LETTER},
    {0x1B000, 0x1B122, CP_LETTER}, {0x1B132, 0x1B132, CP_LETTER}, {0x1B150, 0x1B152, CP_LETTER},
    {0x1B155, 0x1B155, CP_LETTER}, {0x1B164, 0x1B167, CP_LETTER}, {0x1B170, 0x1B2FB, CP_LETTER},
    {0x1BC00, 0x1BC6A, CP_LETTER}, {0x1BC70, 0x1BC7C, CP_LETTER}, {0x1BC80, 0x1BC88, CP_LETTER},
    {0x1BC90, 0x1BC99, CP_LETTER}, {0x1D2C0, 0x1D2D3, CP_NUMBER}, {0x1D2E0, 0x1D2F3, CP_NUMBER},
    {0x1D360, 0x1D378, CP_NUMBER}, {0x1D400, 0x1D454, CP_LETTER}, {0x1D456, 0x1D49C, CP_LETTER},
    {0x1D49E, 0x1D49F, CP_LETTER}, {0x1D4A2, 0x1D4A2, CP_LETTER}, {0x1D4A5, 0x1D4A6, CP_LETTER},
    {0x1D4A9, 0x1D4AC, CP_LETTER}, {0x1D4AE, 0x1D4B9, CP_LETTER}, {0x1D4BB, 0x1D4BB, CP_LETTER},
    {0x1D4BD, 0x1D4C3, CP_LETTER}, {0x1D4C5, 0x1D505, CP_LETTER}, {0x1D507, 0x1D50A, CP_LETTER},
    {0x1D50D, 0x1D514, CP_LETTER}, {0x1D516, 0x1D51C, CP_LETTER}, {0x1D51E, 0x1D539, CP_LETTER},
    {0x1D53B, 0x1D53E, CP_LETTER}, {0x1D540, 0x1D544, CP_LETTER}, {0x1D546, 0x1D546, CP_LETTER},
    {0x1D54A, 0x1D550, CP_LETTER}, {0x1D552, 0x1D6A5, CP_LETTER}, {0x1D6A8, 0x1D6C0, CP_LETTER},
    {0x1D6C2, 0x1D6DA, CP_LETTER}, {0x1D6DC, 0x1D6FA, CP_LETTER}, {0x1D6FC, 0x1D714, CP_LETTER},
    {0x1D716, 0x1D734, CP_LETTER}, {0x1D736, 0x1D74E, CP_LETTER}, {0x1D750, 0x1D76E, CP_LETTER},
    {0x1D770, 0x1D788, CP_LETTER}, {0x1D78A, 0x1D7A8, CP_LETTER}, {0x1D7AA, 0x1D7C2, CP_LETTER},
    {0x1D7C4, 0x1D7CB, CP_LETTER}, {0x1D7CE, 0x1D7FF, CP_NUMBER}, {0x1DF00, 0x1DF1E, CP_LETTER},
    {0x1DF25, 0x1DF2A, CP_LETTER}, {0x1E030, 0x1E06D, CP_LETTER}, {0x1E100, 0x1E12C, CP_LETTER},
    {0x1E137, 0x1E13D, CP_LETTER}, {0x1E140, 0x1E149, CP_NUMBER}, {0x1E14E, 0x1E14E, CP_LETTER},
    {0x1E290, 0x1E2AD, CP_LETTER}, {0x1E2C0, 0x1E2EB, CP_LETTER}, {0x1E2F0, 0x1E2F9, CP_NUMBER},
    {0x1E4D0, 0x1E4EB, CP_LETTER}, {0x1E4F0, 0x1E4F9, CP_NUMBER}, {0x1E7E0, 0x1E7E6, CP_LETTER},
    {0x1E7E8, 0x1E7EB, CP_LETTER}, {0x1E7ED, 0x1E7EE, CP_LETTER}, {0x1E7F0, 0x1E7FE, CP_LETTER},
    {0x1E800, 0x1E8C4, CP_LETTER}, {0x1E8C7, 0x1E8CF, CP_NUMBER}, {0x1E900, 0x1E943, CP_LETTER},
    {0x1E94B, 0x1E94B, CP_LETTER}, {0x1E950, 0x1E959, CP_NUMBER}, {0x1EC71, 0x1ECAB, CP_NUMBER},
    {0x1ECAD, 0x1ECAF, CP_NUMBER}, {0x1ECB1, 0x1ECB4, CP_NUMBER}, {0x1ED01, 0x1ED2D, CP_NUMBER},
    {0x1ED2F, 0x1ED3D, CP_NUMBER}, {0x1EE00, 0x1EE03, CP_LETTER}, {0x1EE05, 0x1EE1F, CP_LETTER},
    {0x1EE21, 0x1EE22, CP_LETTER}, {0x1EE24, 0x1EE24, CP_LETTER}, {0x1EE27, 0x1EE27, CP_LETTER},
    {0x1EE29, 0x1EE32, CP_LETTER}, {0x1EE34, 0x1EE37, CP_LETTER}, {0x1EE39, 0x1EE39, CP_LETTER},
    {0x1EE3B, 0x1EE3B, CP_LETTER}, {0x1EE42, 0x1EE42, CP_LETTER}, {0x1EE47, 0x1EE47, CP_LETTER},
    {0x1EE49, 0x1EE49, CP_LETTER}, {0x1EE4B, 0x1EE4B, CP_LETTER}, {0x1EE4D, 0x1EE4F, CP_LETTER},
    {0x1EE51, 0x1EE52, CP_LETTER}, {0x1EE54, 0x1EE54, CP_LETTER}, {0x1EE57, 0x1EE57, CP_LETTER},
    {0x1EE59, 0x1EE59, CP_LETTER}, {0x1EE5B, 0x1EE5B, CP_LETTER}, {0x1EE5D, 0x1EE5D, CP_LETTER},
    {0x1EE5F, 0x1EE5F, CP_LETTER}, {0x1EE61, 0x1EE62, CP_LETTER}, {0x1EE64, 0x1EE64, CP_LETTER},
    {0x1EE67, 0x1EE6A, CP_LETTER}, {0x1EE6C, 0x1EE72, CP_LETTER}, {0x1EE74, 0x1EE77, CP_LETTER},
    {0x1EE79, 0x1EE7C, CP_LETTER}, {0x1EE7E, 0x1EE7E, CP_LETTER}, {0x1EE80, 0x1EE89, CP_LETTER},
    {0x1EE8B, 0x1EE9B, CP_LETTER}, {0x1EEA1, 0x1EEA3, CP_LETTER}, {0x1EEA5, 0x1EEA9, CP_LETTER},
    {0x1EEAB, 0x1EEBB, CP_LETTER}, {0x1F100, 0x1F10C, CP_NUMBER}, {0x1FBF0, 0x1FBF9, CP_NUMBER},
    {0x20000, 0x2A6DF, CP_LETTER}, {0x2A700, 0x2B739, CP_LETTER}, {0x2B740, 0x2B81D, CP_LETTER},
    {0x2B820, 0x2CEA1, CP_LETTER}, {0x2CEB0, 0x2EBE0, CP_LETTER}, {0x2F800, 0x2FA1D, CP_LETTER},
    {0x30000, 0x3134A, CP_LETTER}, {0x31350, 0x323AF, CP_LETTER},
};
// END unicode table

static CharClass char_class(uint32_t c) {
    if (c < 0x80) // ASCII, the common case, without a search
        return (c | 0x20) - 'a' < 26 ? CHAR_LETTER : c - '0' < 10 ? CHAR_NUMBER
               : c == ' ' || (c >= '\t' && c <= '\r') ? CHAR_SPACE : CHAR_OTHER;
    size_t lo = 0, hi = sizeof(unicode_runs) / sizeof(unicode_runs[0]); // the run c may be in is below hi
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c < unicode_runs[mid].first) hi = mid;
        else if (c > unicode_runs[mid].last) lo = mid + 1;
        else return (CharClass)unicode_runs[mid].cls;
    }
    return CHAR_OTHER;
}
