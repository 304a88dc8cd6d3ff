/* run.c: Llama inference on a CPU, in one C file (plus tokenizer.c, which it
   includes).

   A command-line program that loads a Llama model (Llama 2 and 3.x, and
   those built like them), turns a prompt into token ids exactly as the
   model's own tokenizer does, runs the transformer and streams the generated
   text to stdout; it also chats and measures perplexity. It reads llama2.c's
   checkpoints and GGUF files (weight_types lists the types they may hold). It needs
   only libc and libm; OpenMP, when the compiler has it, spreads the work.

   Build and run:
       cc -O3 run.c -lm -o run       (or make: adds OpenMP and warnings)
       ./run stories15M.bin -i "Once upon a time"
       ./run -h                      (every flag, with its default)

   How to read it: top to bottom. The first part is the lesson, the whole
   program for float32 weights in plain C; the second holds what a first
   reading may skip. Each section opens with a banner; search for its title.
       Errors and helpers
       Data structures
       Loading llama2.c checkpoints
       The plain kernels, and their dispatch
       The forward pass
       The state: activations and the KV cache
       The tokenizer                            (tokenizer.c)
       Sampling
       The loops: generate, perplexity, chat, tokenize
     -- what a first reading may skip --
       Weight types: int8, 16-bit floats and GGUF's blocks
       Other formats: GGUF
       Chat formats
       Top-p over a large vocabulary
       Fast kernels                             (AVX-512, AVX2, NEON)
       Platform: memory, files, the clock and the terminal
       Command line                                                           */

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// ============================================================================
// Errors and helpers
//
// Errors: one way out for anything a user's file, flag or text gets wrong.
// The message names what was wrong and what was expected, on one line.

#ifdef FUZZING
#include <setjmp.h>
static jmp_buf fuzz_escape; // the fuzz/ harnesses return here instead of exiting
#endif

// "run: " and the message, one line on stderr, after whatever stdout holds.
static void report(const char *fmt, va_list ap) {
    fflush(stdout);
    fputs("run: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

static void fatal(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    report(fmt, ap);
    va_end(ap);
#ifdef FUZZING
    longjmp(fuzz_escape, 1);
#endif
    exit(EXIT_FAILURE);
}

// A problem the run goes on past, said the same way.
static void warn(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    report(fmt, ap);
    va_end(ap);
}

static void *xmalloc(size_t n, const char *what) {
    void *p = calloc(1, n ? n : 1);
    if (!p) fatal("out of memory: %s needs %zu bytes", what, n);
    return p;
}

static void *xrealloc(void *p, size_t n, const char *what) {
    p = realloc(p, n ? n : 1);
    if (!p) fatal("out of memory: %s needs %zu bytes", what, n);
    return p;
}

// Threads: OpenMP when the compiler has it. Without it the pragmas below are
// ignored and everything runs on one thread.
#ifdef _OPENMP
#include <omp.h>
static int max_threads(void) { return omp_get_max_threads(); }
static int thread_index(void) { return omp_get_thread_num(); }
#else
static int max_threads(void) { return 1; }
static int thread_index(void) { return 0; }
#endif

// Reads 4 bytes as a little-endian uint32: every file format here is little-endian.
static uint32_t read_u32le(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static int32_t read_i32le(const unsigned char *p) { return (int32_t)read_u32le(p); }

// ============================================================================
// Data structures

typedef struct {
    int dim;               // width of the residual stream
    int hidden_dim;        // width of the feed-forward layer
    int n_layers;
    int n_heads;           // query heads
    int n_kv_heads;        // key/value heads; fewer than n_heads is grouped-query attention
    int vocab_size;
    int seq_len;           // context length the model was trained for
    int head_size;         // dim / n_heads
    int kv_dim;            // n_kv_heads * head_size: width of one position's keys
    int shared_classifier; // the output layer reuses the token embedding
    int group_size;        // int8 weights: consecutive values of a row that share one scale
    float rope_theta;      // base of RoPE's frequencies: 10000 in Llama 2
    float rope_scale;      // linear RoPE scaling: positions are divided by it (1: none)
    float norm_eps;        // added to RMSNorm's mean square: 1e-5 in Llama 2
} Config;

// How a weight matrix's numbers are stored. The lesson needs only float32;
// the others are described, one row each, in weight_types under "Weight types".
typedef enum {
    WEIGHT_F32, WEIGHT_Q8, WEIGHT_F16, WEIGHT_BF16, // float32; int8 (llama2.c); 16-bit floats (GGUF)
    WEIGHT_Q8_0, WEIGHT_Q4_0, WEIGHT_Q4_1, WEIGHT_Q5_0, WEIGHT_Q5_1, WEIGHT_IQ4_NL, // GGUF's blocks of 32
    WEIGHT_Q2_K, WEIGHT_Q3_K, WEIGHT_Q4_K, WEIGHT_Q5_K, WEIGHT_Q6_K, WEIGHT_IQ4_XS, // and of 256
    WEIGHT_TYPES
} WeightType;

// A weight matrix (rows, cols), row-major: row i holds the weights of output
// i, so a matrix-vector product reads each row once, front to back.
typedef struct {
    WeightType type;
    int rows, cols;
    const void *data;    // the values, row_bytes per row: (rows, cols) in the storage type
    const float *scale;  // Q8 only: (rows, cols / group_size), separate from the values
    int group_size;      // Q8, and GGUF's block types (QBLOCK, under "Weight types"): input values sharing a scale; divides cols
    size_t row_bytes;
    int packed_rows;     // rows 0..packed_rows-1 are laid out again for the fast kernels (see repack_weights); 0: none
} Matrix;

typedef struct {
    const float *rms_att; // (dim) RMSNorm weight before attention
    Matrix wq;            // (dim, dim)
    Matrix wk;            // (kv_dim, dim)
    Matrix wv;            // (kv_dim, dim)
    Matrix wo;            // (dim, dim)
    const float *rms_ffn; // (dim) RMSNorm weight before the feed-forward block
    Matrix w1;            // (hidden_dim, dim) gate
    Matrix w2;            // (dim, hidden_dim) down
    Matrix w3;            // (hidden_dim, dim) up
} Layer;

typedef struct {
    Matrix token_embedding; // (vocab_size, dim)
    Layer *layers;          // (n_layers)
    const float *rms_final; // (dim)
    Matrix classifier;      // (vocab_size, dim); the token embedding itself when shared
    const float *rope_freqs; // (head_size / 2) Llama 3.1's RoPE scaling: each pair's frequency is divided by its factor; NULL: none
} Weights;

// Activations and the KV cache. A forward call takes up to max_tokens tokens
// at once (a block of the prompt, or one token when generating), so each
// activation has one row per token, allocated once by build_state; the KV
// cache, the scores and the RoPE tables grow in reserve_positions.
typedef struct {
    int max_tokens;     // tokens per forward call: the prompt's block size
    int n_ctx;          // positions the cache may hold: this run's -n, at most seq_len
    int cache_positions; // positions it has room for now: it grows up to n_ctx (see reserve_positions)
    float *x;           // (max_tokens, dim) the residual stream
    float *xb, *xb2;    // (max_tokens, dim) scratch
    float *q;           // (max_tokens, dim) queries, all heads
    float *hb, *hb2;    // (max_tokens, hidden_dim) feed-forward gate and up
    struct Quantized *xq; // int8 and GGUF block weights only: their matmuls' input in int8 (see "Weight types")
    int score_rows;     // queries attention scores at once: max_tokens, or a token's heads that share a key/value head
    float *scores;      // (threads, score_rows, cache_positions) attention scores: a block per thread
    float *logits;      // (max_tokens, vocab_size)
    void *key_cache;    // (n_layers, n_kv_heads, cache_positions, head_size) float32, or float16 when kv_f16
    void *value_cache;  // (n_layers, n_kv_heads, cache_positions, head_size)
    int kv_f16;         // the cache holds float16: half the memory, and half what attention reads
    float *k_new, *v_new; // (max_tokens, kv_dim) a call's keys and values, before they go into the cache
    float *rope_cos;    // (cache_positions, head_size / 2) RoPE rotation of each pair at each position
    float *rope_sin;    // (cache_positions, head_size / 2)
    void *arena, *kv_region;          // where hb, hb2 and logits live (see build_state), and the KV cache
    size_t arena_size, kv_region_size;
} State;

// How the weights get into memory.
typedef enum {
    WEIGHTS_READ, // read into memory of our own, on 2 MB pages where the OS allows
    WEIGHTS_MAP,  // memory-map the file: zero copy, and pages shared with other processes
} WeightsLoad;

typedef struct {
    Config config;
    Weights weights;
    State state;
    struct GGUFVocab *vocab;   // GGUF files only: the tokenizer the file carries (see "The tokenizer"); else NULL
    const char *chat_template; // GGUF files only, when present (not NUL-terminated)
    size_t chat_template_len;
    int int8;        // some weights are int8: matmul inputs are quantized too
    int blocks;      // some weights are GGUF block types: the quantized inputs keep their sums per 16 too
    long n_forwarded; // tokens run through the model so far
    const char *path;
    void *map;       // the checkpoint file: read into memory (rewritten only at start-up) or memory-mapped
    size_t map_size; // what unload_file needs to give it back
    WeightsLoad load;
} Model;

// ============================================================================
// Loading llama2.c checkpoints
//
// A checkpoint is a header and then raw arrays, little-endian, in one of
// the three layouts llama2.c's export.py writes:
//   legacy:    7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len), a
//              negative vocab_size meaning a separate classifier, stored last; then float32 weights,
//              with two unused RoPE tables before the classifier.
//   version 1: uint32 magic "ak42", int32 version, the same 7 int32, one byte shared_classifier,
//              zeros up to byte 256; then float32 weights, norms first.
//   version 2: as version 1, plus int32 group_size at byte 37; the norms in float32, then each
//              matrix as int8 values followed by its scales.
// The header is checked completely, and the file's size must be exactly what
// it implies, before any pointer into the weights is made.

#define CHECKPOINT_MAGIC 0x616b3432u // "ak42" read as a little-endian uint32
#define V1_HEADER_BYTES 256

// Checks every size in a header lies within bounds (in "Other formats: GGUF",
// which shares it); source names where they came from, for the messages.
static void check_config(const Config *c, const char *path, const char *source);

// Walks a file's layout. With base NULL it only adds up sizes, so the same
// code that maps the weights first measures the size the file must have.
typedef struct {
    const unsigned char *base;
    uint64_t offset;
} Cursor;

static const void *take(Cursor *c, uint64_t bytes) {
    const void *p = c->base ? c->base + c->offset : NULL;
    c->offset += bytes;
    return p;
}

static const float *take_floats(Cursor *c, uint64_t n) { return take(c, n * sizeof(float)); }

static Matrix take_matrix(Cursor *c, WeightType type, int rows, int cols, int group_size) {
    Matrix m = {type, rows, cols, NULL, NULL, group_size, (size_t)cols * (type == WEIGHT_F32 ? sizeof(float) : 1), 0};
    uint64_t n = (uint64_t)rows * cols;
    if (type == WEIGHT_F32) {
        m.data = take_floats(c, n);
    } else {
        m.data = take(c, n);
        m.scale = take_floats(c, n / group_size);
    }
    return m;
}

// Points every weight at its place in the file: zero copy.
static void memory_map_weights(Weights *w, const Config *c, Cursor *cur, int version) {
    int L = c->n_layers, dim = c->dim, kv_dim = c->kv_dim, hidden = c->hidden_dim, gs = c->group_size;
    WeightType type = version == 2 ? WEIGHT_Q8 : WEIGHT_F32;
    Layer *layer = w->layers;
    if (version != 0) { // norms first
        for (int l = 0; l < L; l++) layer[l].rms_att = take_floats(cur, dim);
        for (int l = 0; l < L; l++) layer[l].rms_ffn = take_floats(cur, dim);
        w->rms_final = take_floats(cur, dim);
    }
    w->token_embedding = take_matrix(cur, type, c->vocab_size, dim, gs);
    if (version == 0)
        for (int l = 0; l < L; l++) layer[l].rms_att = take_floats(cur, dim);
    for (int l = 0; l < L; l++) layer[l].wq = take_matrix(cur, type, dim, dim, gs);
    for (int l = 0; l < L; l++) layer[l].wk = take_matrix(cur, type, kv_dim, dim, gs);
    for (int l = 0; l < L; l++) layer[l].wv = take_matrix(cur, type, kv_dim, dim, gs);
    for (int l = 0; l < L; l++) layer[l].wo = take_matrix(cur, type, dim, dim, gs);
    if (version == 0)
        for (int l = 0; l < L; l++) layer[l].rms_ffn = take_floats(cur, dim);
    for (int l = 0; l < L; l++) layer[l].w1 = take_matrix(cur, type, hidden, dim, gs);
    for (int l = 0; l < L; l++) layer[l].w2 = take_matrix(cur, type, dim, hidden, gs);
    for (int l = 0; l < L; l++) layer[l].w3 = take_matrix(cur, type, hidden, dim, gs);
    if (version == 0) {
        w->rms_final = take_floats(cur, dim);
        take_floats(cur, (uint64_t)c->seq_len * c->head_size); // RoPE cos and sin tables: recomputed instead
    }
    w->classifier = c->shared_classifier ? w->token_embedding : take_matrix(cur, type, c->vocab_size, dim, gs);
}

// In "Other formats: GGUF", below.
#define GGUF_MAGIC 0x46554747u // "GGUF" read as a little-endian uint32
static void parse_gguf(Model *m, const unsigned char *bytes, size_t size, const char *path);

// Reads a checkpoint's header from bytes (size of them) and points every weight at its place there:
// llama2.c's layouts or GGUF. The file is untrusted: nothing is read before it is known to lie inside.
static void read_checkpoint(Model *m, const unsigned char *bytes, size_t size, const char *path) {
    if (size < 28) fatal("%s: %zu bytes is too short for a checkpoint header (28 bytes at least)", path, size);
    Config *c = &m->config;
    int version = 0;
    const unsigned char *params = bytes;
    size_t header_bytes = 28;
    if (read_u32le(bytes) == GGUF_MAGIC) {
        parse_gguf(m, bytes, size, path);
        return;
    }
    if (read_u32le(bytes) == CHECKPOINT_MAGIC) {
        if (size < V1_HEADER_BYTES) fatal("%s: %zu bytes is too short for a version 1/2 header (256 bytes)", path, size);
        version = read_i32le(bytes + 4);
        if (version != 1 && version != 2)
            fatal("%s: checkpoint version %d; this program reads the legacy layout and versions 1 (fp32) "
                  "and 2 (int8)", path, version);
        params = bytes + 8;
        header_bytes = V1_HEADER_BYTES;
    }
    c->dim = read_i32le(params);
    c->hidden_dim = read_i32le(params + 4);
    c->n_layers = read_i32le(params + 8);
    c->n_heads = read_i32le(params + 12);
    c->n_kv_heads = read_i32le(params + 16);
    c->vocab_size = read_i32le(params + 20);
    c->seq_len = read_i32le(params + 24);
    if (version == 0) {
        c->shared_classifier = c->vocab_size > 0; // negative: a separate classifier follows
        if (c->vocab_size < 0 && c->vocab_size != INT32_MIN) c->vocab_size = -c->vocab_size;
    } else {
        unsigned char shared = params[28];
        if (shared > 1) fatal("%s: header has shared_classifier = %d, expected 0 or 1", path, shared);
        c->shared_classifier = shared;
    }
    check_config(c, path, "header");
    c->head_size = c->dim / c->n_heads;
    c->kv_dim = c->n_kv_heads * c->head_size;
    c->rope_theta = 10000.0f; // fixed for llama2.c files: their header has no field for it
    c->rope_scale = 1.0f;
    c->norm_eps = 1e-5f;
    if (version == 2) {
        c->group_size = read_i32le(params + 29);
        int gs = c->group_size;
        // A group must not straddle two rows (llama2.c's runq then silently computes garbage),
        // and whole groups keep the float scales that follow the int8 values 4-byte aligned.
        if (gs <= 0 || gs % 4 != 0 || c->dim % gs != 0 || c->hidden_dim % gs != 0)
            fatal("%s: int8 group size %d does not fit: it must be a multiple of 4 that divides dim %d and "
                  "hidden_dim %d", path, gs, c->dim, c->hidden_dim);
        m->int8 = 1;
    }

    m->weights.layers = xmalloc(c->n_layers * sizeof(Layer), "the layer table");
    Cursor measure = {NULL, header_bytes};
    memory_map_weights(&m->weights, c, &measure, version);
    if (measure.offset != size)
        fatal("%s: header says dim %d, hidden_dim %d, %d layers, %d heads (%d kv), vocab %d, seq_len %d%s = "
              "%llu bytes, but the file has %zu", path, c->dim, c->hidden_dim, c->n_layers, c->n_heads,
              c->n_kv_heads, c->vocab_size, c->seq_len, version == 2 ? ", int8" : "",
              (unsigned long long)measure.offset, size);
    Cursor map = {bytes, header_bytes};
    memory_map_weights(&m->weights, c, &map, version);
}

// ============================================================================
// The plain kernels, and their dispatch
//
// The few operations the forward pass is made of, written plainly in scalar
// C: each is the definition of what it computes. The ones where the time goes
// (the matrix products, RMSNorm, softmax, SwiGLU) are called through a table
// of kernels, `kernels`, which holds these plain ones until select_kernels()
// swaps in SIMD versions the CPU runs (see "Fast kernels", near the end);
// the tests hold every SIMD version to its plain one here.

// RMSNorm: scale x to unit root-mean-square, then by a learned weight per channel.
static void rmsnorm(float *out, const float *x, const float *weight, int n, float eps) {
    float ss = 0.0f;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    ss = 1.0f / sqrtf(ss / n + eps);
    for (int i = 0; i < n; i++) out[i] = weight[i] * (ss * x[i]);
}

// Softmax in place. Subtracting the max first keeps expf from overflowing.
static void softmax(float *x, int n) {
    float max = x[0];
    for (int i = 1; i < n; i++) max = x[i] > max ? x[i] : max;
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    for (int i = 0; i < n; i++) x[i] /= sum;
}

// SwiGLU: gate through SiLU (x * sigmoid(x)), times the up projection.
static void swiglu(float *gate, const float *up, int n) {
    for (int i = 0; i < n; i++) {
        float g = gate[i];
        g *= 1.0f / (1.0f + expf(-g));
        gate[i] = g * up[i];
    }
}

// RoPE: rotate each adjacent pair (v[2i], v[2i+1]) of every head by the angle for this position,
// so that the dot product of a query and a key depends on how far apart they are.
static void rope(float *v, int n, int head_size, const float *cos_pos, const float *sin_pos) {
    for (float *head = v; head < v + n; head += head_size)
        for (int i = 0; i < head_size; i += 2) { // pair i / 2 of the head
            float c = cos_pos[i / 2], s = sin_pos[i / 2], v0 = head[i], v1 = head[i + 1];
            head[i] = v0 * c - v1 * s;
            head[i + 1] = v0 * s + v1 * c;
        }
}

// A matmul's input: `tokens` vectors of n floats. For int8 and GGUF block
// weights, the same vectors quantized too (by quantize_input, under "Weight types").
typedef struct {
    const float *f;       // (tokens, n)
    const int8_t *q;      // (tokens, n) from here on int8 and block weights only: f quantized to int8
    const float *scale;   // (tokens, n / group_size)
    const int32_t *sum;   // (tokens, n / group_size) each group's sum of q
    const int32_t *sum16; // (tokens, n / 16) each 16's sum of q (GGUF's block types only)
    const float *scaled_sum; // (tokens, n / group_size) scale * sum, what a block's offsets multiply (block types only)
    const int8_t *q_runs32, *q_runs16; // (tokens, n) block types: q reordered for the SIMD kernels (interleave_runs)
    int tokens, n;
} Input;

// The matrix-product kernels compute, for `rows` rows of w and `tokens` input vectors x,
//     out[t * out_stride + r] = sum over j < n of w[r * w_stride + j] * x[t * x_stride + j]
// one contiguous block of rows at a time; matmul() below spreads the blocks over threads.
typedef void F32Rows(float *out, size_t out_stride, const float *w, size_t w_stride, const float *x,
                     size_t x_stride, int n, int rows, int tokens);
// Attention's last step: weighted sums of rows (values), one for each of `queries` sets of weights.
//     out[q * out_stride + i] = sum over r < rows of a[q * a_stride + r] * v[r * v_stride + i],  i < n
typedef void WeightedRows(float *out, size_t out_stride, const float *a, size_t a_stride, const float *v,
                          size_t v_stride, int n, int rows, int queries);

static void weighted_rows_scalar(float *out, size_t out_stride, const float *a, size_t a_stride, const float *v,
                                 size_t v_stride, int n, int rows, int queries) {
    for (int q = 0; q < queries; q++) {
        float *o = out + q * out_stride;
        const float *w = a + q * a_stride;
        for (int i = 0; i < n; i++) o[i] = 0.0f;
        for (int r = 0; r < rows; r++)
            for (int i = 0; i < n; i++) o[i] += w[r] * v[r * v_stride + i];
    }
}

static void f32_rows_scalar(float *out, size_t out_stride, const float *w, size_t w_stride, const float *x,
                            size_t x_stride, int n, int rows, int tokens) {
    for (int t = 0; t < tokens; t++) {
        for (int r = 0; r < rows; r++) {
            const float *wr = w + r * w_stride, *xt = x + t * x_stride;
            float sum = 0.0f;
            for (int j = 0; j < n; j++) sum += wr[j] * xt[j];
            out[t * out_stride + r] = sum;
        }
    }
}

// The other kinds of kernel, each described with its plain kernel under "Weight types": int8 weights
// with a scale per group, 16-bit floats, GGUF's block types; and attention's weighted sum over a float16 KV cache.
typedef void Q8Rows(float *out, size_t out_stride, const int8_t *wq, const float *w_scale, size_t w_stride,
                    const int8_t *xq, const float *x_scale, const int32_t *x_sum, size_t x_stride, int n, int gs,
                    int rows, int tokens);
typedef void HalfRows(float *out, size_t out_stride, const uint16_t *w, size_t w_stride, const float *x,
                      size_t x_stride, int n, int rows, int tokens);
typedef void BlockRows(WeightType type, float *out, size_t out_stride, const uint8_t *w, size_t row_bytes,
                       const Input *x, int rows);
typedef void WeightedHalfRows(float *out, size_t out_stride, const float *a, size_t a_stride, const uint16_t *v,
                              size_t v_stride, int n, int rows, int queries);

// The dispatch: one set of kernels, every one of a kind. The forward pass
// calls them through `kernels`; "Fast kernels" holds the other sets.
typedef struct {
    const char *name;
    int (*supported)(void);
    F32Rows *f32_rows;
    WeightedRows *weighted_rows;
    // the steps between the matrix products
    void (*rmsnorm)(float *out, const float *x, const float *weight, int n, float eps);
    void (*softmax)(float *x, int n);
    void (*swiglu)(float *gate, const float *up, int n);
    // the other weight types, and the float16 KV cache
    Q8Rows *q8_rows;
    HalfRows *f16_rows, *bf16_rows;
    BlockRows *block_rows[WEIGHT_TYPES]; // each GGUF block type's kernel (the plain one where a set has none)
    BlockRows *packed_rows[WEIGHT_TYPES]; // the kernel for rows in panels (repack_weights); none: rows stay as stored
    void (*quantize)(int8_t *q, float *scale, int32_t *sum, int32_t *sum16, const float *x, int n, int gs); // their input
    WeightedHalfRows *weighted_f16_rows;
    void (*to_f16)(uint16_t *dst, const float *src, size_t n);
} KernelSet;

static int always(void) { return 1; } // the plain set's supported(): every CPU runs it

// The kernels in use: the plain ones until select_kernels() picks the best set
// this CPU runs. (A tentative definition: it is given them under "Weight types".)
static KernelSet kernels;

// One row of a matrix as floats: how a token's embedding is looked up.
static void decode_row(float *out, const Matrix *m, int row); // the other weight types, under "Weight types"
static void matrix_row(float *out, const Matrix *m, int row) {
    if (m->type == WEIGHT_F32) memcpy(out, (const float *)m->data + (size_t)row * m->cols, m->cols * sizeof(float));
    else decode_row(out, m, row);
}

// A matmul's input from x (tokens, n): the floats as they are, and for int8 and block weights the same quantized.
static void quantize_input(Model *m, Input *in); // under "Weight types"
static Input prepare_input(Model *m, const float *x, int tokens, int n) {
    Input in = {.f = x, .tokens = tokens, .n = n};
    if (m->int8) quantize_input(m, &in);
    return in;
}

// Rows per unit of parallel work: a thread's share of a matrix is a few long
// runs, which prefetchers stream well, and two 16-row panels ("Weight types").
#define MATMUL_ROW_BLOCK 32

// Block b of a matrix product: rows b * MATMUL_ROW_BLOCK onwards of out (tokens, w.rows) = in (tokens, w.cols) @ w^T.
static void other_rows(float *out, const Input *in, const Matrix *w, int r0, int rows); // under "Weight types"
static void repack_weights(Weights *w, const Config *c); // under "Weight types"
static void matmul_block(float *out, const Input *in, const Matrix *w, int b) {
    int n = w->cols, d = w->rows, r0 = b * MATMUL_ROW_BLOCK;
    int rows = d - r0 < MATMUL_ROW_BLOCK ? d - r0 : MATMUL_ROW_BLOCK;
    if (w->type == WEIGHT_F32)
        kernels.f32_rows(out + r0, d, (const float *)w->data + (size_t)r0 * n, n, in->f, n, n, rows, in->tokens);
    else
        other_rows(out, in, w, r0, rows);
}

// out[i] (tokens, w[i].rows) = in (tokens, w[i].cols) @ w[i]^T for count matrices that share
// their input (wq, wk, wv; w1, w3), each weight read once: threads take all their blocks of rows
// as one list, for one start and wait of the threads. Guided: each thread starts on a long run
// of blocks, the last go in shrinking pieces to whichever is free (bench/NOTES.md).
static void matmuls(int count, float *const out[], const Input *in, const Matrix *const w[]) {
    int first_block[4], n_blocks = 0; // first_block[i]: where matrix i's blocks start in the list
    if (count > 4) fatal("matmuls: %d products at once, at most 4", count); // a programming error
    for (int i = 0; i < count; i++) {
        first_block[i] = n_blocks;
        n_blocks += (w[i]->rows + MATMUL_ROW_BLOCK - 1) / MATMUL_ROW_BLOCK;
    }
    int b;
#pragma omp parallel for schedule(guided)
    for (b = 0; b < n_blocks; b++) {
        int i = count - 1;
        while (b < first_block[i]) i--;
        matmul_block(out[i], in, w[i], b - first_block[i]);
    }
}

static void matmul(float *out, const Input *in, const Matrix *w) { matmuls(1, &out, in, &w); }

// Attention in three steps, for T queries that share a key/value head, `per_pos` at each position from pos on (1, or
// a token's heads that share the keys). keys and values point at its position 0 in the KV cache, a row of head_size
// values a position, float32 or (kv_f16) float16 (see kv_row); queries and outputs are `stride` floats apart; scores
// has room for T * (pos + T / per_pos) floats. The queries go ATTENTION_TILE at a time, each tile scored against the
// keys up to its last query's: causal, none needs later keys.
#define ATTENTION_TILE 32 // 64 wastes more of the triangle; 16 gains nothing more (bench/NOTES.md)
static void attention(float *out, const float *q, size_t stride, const void *keys, const void *values, int kv_f16,
                      float *scores, int pos, int T, int per_pos, int head_size) {
    for (int t0 = 0; t0 < T; t0 += ATTENTION_TILE) {
        int tile = T - t0 < ATTENTION_TILE ? T - t0 : ATTENTION_TILE, n_keys = pos + (t0 + tile - 1) / per_pos + 1;
        const float *q_tile = q + (size_t)t0 * stride;
        // Step 1, scores (tile, n_keys): every query against every key, a matrix product with the keys as the weights.
        if (kv_f16) kernels.f16_rows(scores, n_keys, keys, head_size, q_tile, stride, head_size, n_keys, tile);
        else kernels.f32_rows(scores, n_keys, keys, head_size, q_tile, stride, head_size, n_keys, tile);
        for (int t = t0; t < t0 + tile; t++) {
            float *s = scores + (size_t)(t - t0) * n_keys;
            int visible = pos + t / per_pos + 1; // causal: a query sees the keys up to its own position only
            // Step 2, probabilities: the scores scaled to about unit variance, then softmax; later keys weigh nothing.
            float scale = 1.0f / sqrtf((float)head_size);
            for (int k = 0; k < visible; k++) s[k] *= scale;
            kernels.softmax(s, visible);
            for (int k = visible; k < n_keys; k++) s[k] = 0.0f;
        }
        // Step 3, the outputs: the values' rows summed, weighted by each query's probabilities.
        float *out_tile = out + (size_t)t0 * stride;
        if (kv_f16) kernels.weighted_f16_rows(out_tile, stride, scores, n_keys, values, head_size, head_size, n_keys, tile);
        else kernels.weighted_rows(out_tile, stride, scores, n_keys, values, head_size, head_size, n_keys, tile);
    }
}

// The KV cache keeps each layer's key/value heads' positions as consecutive rows, so that
// attention reads a head's keys and values as one stream, which the hardware prefetchers
// follow: (n_layers, n_kv_heads, cache_positions, head_size). The row of position pos:
static void *kv_row(const State *s, const Config *c, void *cache, int layer, int kv_head, int pos) {
    size_t row_bytes = (size_t)c->head_size * (s->kv_f16 ? 2 : 4);
    size_t row = ((size_t)layer * c->n_kv_heads + kv_head) * s->cache_positions + pos;
    return (unsigned char *)cache + row * row_bytes;
}

// Stores one head's key or value (head_size floats) in its row.
static void kv_store(const State *s, void *row, const float *x, int head_size) {
    if (s->kv_f16) kernels.to_f16(row, x, head_size); // half the memory, rounded to nearest
    else memcpy(row, x, head_size * sizeof(float));
}

// ============================================================================
// The forward pass
//
// Tokens in, logits for the token after each out. n_tokens tokens (at most
// max_tokens) at positions pos, pos+1, ... go through the model together:
// each weight matrix is read once for all of them, which is what makes
// reading a prompt fast. Returns the logits the caller asks for: none (NULL),
// the last token's (vocab_size), or every token's (n_tokens, vocab_size).
// Only a prompt's last block needs any, and the classifier is the largest matrix.
typedef enum { LOGITS_NONE, LOGITS_LAST, LOGITS_ALL } Logits;

static void reserve_positions(State *s, const Config *c, const float *rope_freqs, int positions); // in "The state"

static float *forward(Model *m, const int *tokens, int n_tokens, int pos, Logits logits) {
    const Config *c = &m->config;
    const Weights *w = &m->weights;
    State *s = &m->state;
    int dim = c->dim, kv_dim = c->kv_dim, hidden = c->hidden_dim, head_size = c->head_size, T = n_tokens;
    int heads_per_kv = c->n_heads / c->n_kv_heads; // query heads sharing one key/value head
    m->n_forwarded += T;
    reserve_positions(s, c, w->rope_freqs, pos + T); // room in the cache for these positions

    // The residual stream x starts as each token's embedding.
    for (int t = 0; t < T; t++) matrix_row(s->x + (size_t)t * dim, &w->token_embedding, tokens[t]);

    for (int l = 0; l < c->n_layers; l++) {
        const Layer *layer = &w->layers[l];

        // Attention block. RMSNorm first.
        for (int t = 0; t < T; t++)
            kernels.rmsnorm(s->xb + (size_t)t * dim, s->x + (size_t)t * dim, layer->rms_att, dim, c->norm_eps);

        // The queries, keys and values of these tokens: q (T, dim), k and v (T, kv_dim).
        float *k = s->k_new, *v = s->v_new;
        Input in = prepare_input(m, s->xb, T, dim);
        matmuls(3, (float *[]){s->q, k, v}, &in, (const Matrix *[]){&layer->wq, &layer->wk, &layer->wv});

        // RoPE: each query and key turned by its token's position.
        for (int t = 0; t < T; t++) {
            const float *cos_pos = s->rope_cos + (size_t)(pos + t) * (head_size / 2);
            const float *sin_pos = s->rope_sin + (size_t)(pos + t) * (head_size / 2);
            rope(s->q + (size_t)t * dim, dim, head_size, cos_pos, sin_pos);
            rope(k + (size_t)t * kv_dim, kv_dim, head_size, cos_pos, sin_pos);
        }

        // The keys and values go into the cache, at their positions.
        for (int t = 0; t < T; t++)
            for (int kh = 0; kh < c->n_kv_heads; kh++) {
                size_t from = (size_t)t * kv_dim + (size_t)kh * head_size;
                kv_store(s, kv_row(s, c, s->key_cache, l, kh, pos + t), k + from, head_size);
                kv_store(s, kv_row(s, c, s->value_cache, l, kh, pos + t), v + from, head_size);
            }

        // Multi-head attention, head by head, spread over threads. A lone token's heads that share a
        // key/value head go together, so that one pass over the keys scores them all; halved while the
        // threads outnumber the groups, but not below 4, where the scores would take other kernels
        // (other roundings: the thread count would change the output).
        int h, group = T == 1 ? heads_per_kv : 1;
        while (group % 2 == 0 && group >= 8 && c->n_heads / group < max_threads()) group /= 2;
#pragma omp parallel for schedule(dynamic, 1)
        for (h = 0; h < c->n_heads; h += group) {
            float *scores = s->scores + (size_t)thread_index() * s->score_rows * s->cache_positions;
            attention(s->xb + (size_t)h * head_size, s->q + (size_t)h * head_size, T == 1 ? head_size : dim,
                      kv_row(s, c, s->key_cache, l, h / heads_per_kv, 0),
                      kv_row(s, c, s->value_cache, l, h / heads_per_kv, 0), s->kv_f16, scores, pos, T * group, group,
                      head_size);
        }

        // The heads' outputs mixed by wo, and added to the residual stream.
        in = prepare_input(m, s->xb, T, dim);
        matmul(s->xb2, &in, &layer->wo);
        for (size_t i = 0; i < (size_t)T * dim; i++) s->x[i] += s->xb2[i];

        // Feed-forward block: RMSNorm, then w2 (SiLU(w1 x) * w3 x), added to the residual stream.
        for (int t = 0; t < T; t++)
            kernels.rmsnorm(s->xb + (size_t)t * dim, s->x + (size_t)t * dim, layer->rms_ffn, dim, c->norm_eps);
        in = prepare_input(m, s->xb, T, dim);
        matmuls(2, (float *[]){s->hb, s->hb2}, &in, (const Matrix *[]){&layer->w1, &layer->w3});
        kernels.swiglu(s->hb, s->hb2, T * hidden);
        in = prepare_input(m, s->hb, T, hidden);
        matmul(s->xb, &in, &layer->w2);
        for (size_t i = 0; i < (size_t)T * dim; i++) s->x[i] += s->xb[i];
    }

    // The classifier: for every token, or only the last one, whose logits choose what comes next.
    if (logits == LOGITS_NONE) return NULL;
    int first = logits == LOGITS_ALL ? 0 : T - 1;
    for (int t = first; t < T; t++)
        kernels.rmsnorm(s->x + (size_t)t * dim, s->x + (size_t)t * dim, w->rms_final, dim, c->norm_eps);
    Input in = prepare_input(m, s->x + (size_t)first * dim, T - first, dim);
    matmul(s->logits, &in, &w->classifier);
    return s->logits;
}

// ============================================================================
// The state: activations and the KV cache
//
// Readying a model for a run: its file into memory (read, or mapped), and
// the memory forward works in: the activations for a block of tokens, and
// the KV cache, which grows with the positions used.

// What the KV cache holds. float16 halves its memory (a 7B model's 4096
// positions: 2 GB instead of 4) and what attention reads at depth; it costs
// nothing where the weights themselves are 16 bits or fewer, so that is the
// default there, and float32 weights keep a float32 cache.
typedef enum { KV_AUTO, KV_F32, KV_F16 } KVCache;

// In "Platform", below: the few things the operating system does, the same
// on POSIX and Windows. map_huge gives zeroed memory on 2 MB pages where the
// OS allows, untouched pages costing nothing; load_file reads a checkpoint
// into such memory, or maps it (load), and fails with a message.
#define HUGE_PAGE (2u << 20)
static void *map_huge(size_t size, size_t *mapped, const char *what);
static void unmap_huge(void *p, size_t mapped);
static void *load_file(const char *path, WeightsLoad load, size_t min_size, const char *what, size_t *size,
                       size_t *mapped);
static void unload_file(void *bytes, size_t mapped, WeightsLoad load);
static FILE *open_file(const char *path, const char *mode); // fopen, with a UTF-8 path on Windows too
static void free_gguf_vocabulary(struct GGUFVocab *v); // in "Other formats: GGUF"
static void align_weights(Model *m, size_t size);

// Opens a checkpoint: read into memory or mapped, then read_checkpoint.
static void open_checkpoint(Model *m, const char *path, WeightsLoad load) {
    memset(m, 0, sizeof(*m));
    m->path = path;
    m->load = load;
    size_t size;
    m->map = load_file(path, load, 28, "a checkpoint header", &size, &m->map_size);
    read_checkpoint(m, m->map, size, path);
    if (load == WEIGHTS_READ) align_weights(m, size); // for the fast kernels, under "Weight types"
}

// Tokens per forward call while reading a prompt. Each weight matrix is read
// from memory once per block instead of once per token, and what the kernels
// do once per block of rows (unpacking Q6_K to a panel, Q4_K's scales) is
// shared by more tokens: 128 read K-quant prompts about a tenth faster than
// 64, and 256 gained nothing more (bench/NOTES.md has the figures).
#define PROMPT_BLOCK 128

// The state's big arrays (the logits and the feed-forward activations) share
// one region on 2 MB pages, touched once when it is made, as llama.cpp clears
// its KV cache: left to be faulted in while reading the prompt, its pages cost
// a large share of a small model's first prompt (a page fault is slow in a
// virtual machine; bench/NOTES.md).
//
// The KV cache may hold n_ctx positions: -n, or the model's whole context for
// a chat without -n. It is made with room for KV_START_POSITIONS, or as many
// as fit in KV_START_BYTES, or all n_ctx if fewer, touched in the same way,
// and doubles whenever a forward call needs more (reserve_positions), so
// memory follows the positions a session reaches: a Llama 3.1 8B's whole
// context of 131,072 positions would take 16 GB in float16.
#define KV_START_POSITIONS 4096
#define KV_START_BYTES (256u << 20)

// Takes the next n_bytes of the region, on their own cache lines.
static void *carve(State *s, size_t *used, size_t n_bytes) {
    void *p = (unsigned char *)s->arena + *used;
    *used += (n_bytes + 63) / 64 * 64; // each array on its own cache lines
    return p;
}

// Zeroes n bytes on 2 MB pages, in parallel, a page each: faster, and it
// starts the threads (and wakes the CPUs they run on) before the prompt
// rather than during it.
static void touch_pages(unsigned char *p, size_t n) {
    long page;
#pragma omp parallel for schedule(static)
    for (page = 0; page < (long)((n + HUGE_PAGE - 1) / HUGE_PAGE); page++) {
        size_t start = (size_t)page * HUGE_PAGE, end = start + HUGE_PAGE < n ? start + HUGE_PAGE : n;
        memset(p + start, 0, end - start);
    }
}

// The int8 copy of matmul inputs, for int8 weights: under "Weight types".
static struct Quantized *build_quantized(size_t tokens, size_t widest, int group_size);
static void free_quantized(struct Quantized *xq);

// Allocates the activations for max_tokens tokens; the KV cache, for up to
// n_ctx positions, comes with reserve_positions.
static void build_state(State *s, const Config *c, int n_ctx, int max_tokens, int int8, int kv_f16) {
    size_t dim = c->dim, hidden = c->hidden_dim, T = max_tokens;
    size_t widest = hidden > dim ? hidden : dim;
    s->max_tokens = max_tokens;
    s->score_rows = max_tokens > c->n_heads / c->n_kv_heads ? max_tokens : c->n_heads / c->n_kv_heads;
    s->n_ctx = n_ctx;
    s->kv_f16 = kv_f16;
    s->x = xmalloc(T * dim * sizeof(float), "activations");
    s->xb = xmalloc(T * dim * sizeof(float), "activations");
    s->xb2 = xmalloc(T * dim * sizeof(float), "activations");
    s->q = xmalloc(T * dim * sizeof(float), "activations");
    size_t n_logits = T * c->vocab_size;
    size_t big = (2 * T * hidden + n_logits) * sizeof(float) + 3 * 64; // 64 bytes of padding each
    s->arena = map_huge(big, &s->arena_size, "the activations");
    size_t used = 0;
    s->hb = carve(s, &used, T * hidden * sizeof(float));
    s->hb2 = carve(s, &used, T * hidden * sizeof(float));
    s->logits = carve(s, &used, n_logits * sizeof(float));
    touch_pages(s->arena, used);
    s->k_new = xmalloc(T * c->kv_dim * sizeof(float), "activations");
    s->v_new = xmalloc(T * c->kv_dim * sizeof(float), "activations");
    if (int8) s->xq = build_quantized(T, widest, c->group_size);
}

// Makes room for positions 0..positions-1 (at most n_ctx) in the KV cache,
// the attention scores and the RoPE tables, doubling them until they fit.
// Each head's stretch of the cache moves to its place in the larger one, and
// the old cache's pages go back to the OS as soon as their rows have moved:
// growing holds little more than the new cache, not the old one beside it.
static void release_pages(void *p, size_t n); // in "Platform"
static void reserve_positions(State *s, const Config *c, const float *rope_freqs, int positions) {
    int old = s->cache_positions, cap = old > 0 ? old : positions;
    if (positions <= old) return;
    if (positions > s->n_ctx) fatal("position %d is past the cache's %d (a bug)", positions - 1, s->n_ctx);
    while (cap < positions) cap = cap > s->n_ctx / 2 ? s->n_ctx : 2 * cap;

    size_t row = (size_t)c->head_size * (s->kv_f16 ? 2 : 4), stretches = (size_t)c->n_layers * c->n_kv_heads;
    size_t bytes = stretches * cap * row, kv_mapped; // of each cache
    unsigned char *kv = map_huge(2 * bytes, &kv_mapped, "the KV cache");
    if (old == 0 && 2 * bytes <= KV_START_BYTES) touch_pages(kv, 2 * bytes);
    unsigned char *from = s->kv_region; // the old cache: its keys' stretches, then its values', old rows each
    size_t stretch_bytes = (size_t)old * row, released = 0;
    for (size_t i = 0; i < 2 * stretches && old > 0; i++) {
        size_t to = (i < stretches ? 0 : bytes) + i % stretches * cap * row;
        memcpy(kv + to, from + i * stretch_bytes, stretch_bytes);
        size_t moved = (i + 1) * stretch_bytes / HUGE_PAGE * HUGE_PAGE; // whole pages only
        if (moved > released) release_pages(from + released, moved - released), released = moved;
    }
    unmap_huge(s->kv_region, s->kv_region_size);
    s->kv_region = kv, s->kv_region_size = kv_mapped;
    s->key_cache = kv, s->value_cache = kv + bytes;
    s->scores = xrealloc(s->scores, (size_t)max_threads() * s->score_rows * cap * sizeof(float), "attention scores");

    size_t half = c->head_size / 2;
    s->rope_cos = xrealloc(s->rope_cos, cap * half * sizeof(float), "RoPE tables");
    s->rope_sin = xrealloc(s->rope_sin, cap * half * sizeof(float), "RoPE tables");
    // Pair i of a head turns by pos * theta^(-2i/head_size): fast for the first
    // pairs, slow for the last, so positions are told apart at every scale. A
    // model stretched to a longer context by linear scaling sees pos / scale;
    // Llama 3.1 and 3.2 divide each pair's frequency by its own factor instead
    // (rope_freqs: 1 for the fast pairs, up to 32 for the slowest).
    for (size_t i = 0; i < half; i++) {
        float freq = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)c->head_size);
        if (rope_freqs) freq /= rope_freqs[i];
        for (int pos = old; pos < cap; pos++) {
            float angle = pos / c->rope_scale * freq;
            s->rope_cos[pos * half + i] = cosf(angle);
            s->rope_sin[pos * half + i] = sinf(angle);
        }
    }
    s->cache_positions = cap;
}

static void free_state(State *s) {
    free(s->x), free(s->xb), free(s->xb2), free(s->q), free(s->k_new), free(s->v_new);
    free_quantized(s->xq);
    unmap_huge(s->arena, s->arena_size);
    unmap_huge(s->kv_region, s->kv_region_size);
    free(s->scores), free(s->rope_cos), free(s->rope_sin);
}

// Whether any layer's matrix is float32 (then KV_AUTO keeps a float32 cache).
static int has_f32_matrices(const Weights *w, const Config *c) {
    for (int l = 0; l < c->n_layers; l++) {
        const Layer *L = &w->layers[l];
        const Matrix *all[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w1, &L->w2, &L->w3};
        for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
            if (all[i]->type == WEIGHT_F32) return 1;
    }
    return 0;
}

// Opens a checkpoint and readies it to run n_ctx positions (0: its whole
// context), max_tokens at a time, with a KV cache of the kind asked for.
static void build_model(Model *m, const char *path, WeightsLoad load, int n_ctx, int max_tokens, KVCache kv) {
    open_checkpoint(m, path, load);
    if (n_ctx <= 0 || n_ctx > m->config.seq_len) n_ctx = m->config.seq_len;
    int kv_f16 = kv == KV_F16 || (kv == KV_AUTO && !has_f32_matrices(&m->weights, &m->config));
    if (load == WEIGHTS_READ) {
        // Laid out again for the fast kernels, if they want it. Not made
        // read-only after: on a VM that shadows the page tables, changing
        // gigabytes' protection made the first pass over them up to twice as
        // slow (bench/NOTES.md).
        repack_weights(&m->weights, &m->config);
    }
    build_state(&m->state, &m->config, n_ctx, max_tokens, m->int8, kv_f16);
    size_t per_position = 2 * (size_t)m->config.n_layers * m->config.kv_dim * (kv_f16 ? 2 : 4); // keys and values
    int start = n_ctx < KV_START_POSITIONS ? n_ctx : KV_START_POSITIONS;
    while (start > 1 && (size_t)start * per_position > KV_START_BYTES) start = (start + 1) / 2;
    reserve_positions(&m->state, &m->config, m->weights.rope_freqs, start);
}

static void free_model(Model *m) {
    free_state(&m->state);
    free_gguf_vocabulary(m->vocab), free(m->vocab);
    free(m->weights.layers);
    unload_file(m->map, m->map_size, m->load);
}


// ============================================================================
// The tokenizer
//
// Text to token ids and back, exactly as the model's own tokenizer does it
// (SentencePiece for Llama 2, byte-level BPE for Llama 3): tokenizer.c,
// included here whole. Its opening comment explains the algorithms.

// SentencePiece's piece types, as GGUF files record them (tokenizer.ggml.token_type).
enum { PIECE_NORMAL = 1, PIECE_UNKNOWN = 2, PIECE_CONTROL = 3, PIECE_USER_DEFINED = 4, PIECE_UNUSED = 5, PIECE_BYTE = 6 };

// The tokenizer a GGUF file carries, read out of it (n == 0: none): SentencePiece's
// (Llama 2, Mistral, TinyLlama) or byte-level BPE's (Llama 3).
typedef struct GGUFVocab {
    int n;
    int bpe;             // byte-level BPE (tokenizer.ggml.model "gpt2"); else SentencePiece ("llama")
    const char **piece;  // (n) each piece's text, in the file
    size_t *piece_len;   // (n)
    float *score;        // (n) SentencePiece's merge priorities, or NULL
    int32_t *type;       // (n) piece types (PIECE_*), or NULL
    const char **merge;  // (n_merges) BPE's merge rules, "left right", most urgent first
    size_t *merge_len;   // (n_merges)
    int n_merges;
    int bos_id, eos_id, unk_id, eot_id, eom_id; // -1: none
    int add_space_prefix, remove_extra_whitespaces, add_bos; // SentencePiece's normalizer flags, and <s> first
    int ignore_merges;   // BPE: a pre-token that is itself a token is taken whole (Llama 3)
} GGUFVocab;

#include "tokenizer.c"

// ============================================================================
// Sampling
//
// Choose the next token from the logits.
//
// The random numbers and the top-p rule are llama2.c's, so that the same seed
// and flags choose the same tokens in both programs.

typedef struct {
    float prob;
    int index;
} ProbIndex;

typedef struct {
    int vocab_size;
    float temperature;  // 0: always the most likely token; 1: the model's own distribution
    float topp;         // keep the most likely tokens until their mass exceeds topp; 0 or 1: off
    int topk;           // keep only the k most likely tokens; 0: off
    uint64_t rng_state; // xorshift64* state; never 0
    ProbIndex *heap;    // (vocab_size) scratch for picking candidates
    ProbIndex *chosen;  // (vocab_size) the candidates, most likely first
    double *bucket_mass; // (PROB_BUCKETS) top-p over a large vocabulary: see sample_topp
    int *bucket_count;  // (PROB_BUCKETS)
} Sampler;

// Probabilities are sorted into buckets by their top 16 bits (see sample_topp); 1.0f's is 0x3F80.
#define PROB_BUCKETS 0x3F81

static void build_sampler(Sampler *s, int vocab_size, float temperature, float topp, int topk, uint64_t seed) {
    s->vocab_size = vocab_size;
    s->temperature = temperature;
    s->topp = topp;
    s->topk = topk;
    s->rng_state = seed ? seed : 1; // xorshift stays at 0 forever from 0
    s->heap = xmalloc(vocab_size * sizeof(ProbIndex), "the sampler");
    s->chosen = xmalloc(vocab_size * sizeof(ProbIndex), "the sampler");
    s->bucket_mass = xmalloc(PROB_BUCKETS * sizeof(double), "the sampler");
    s->bucket_count = xmalloc(PROB_BUCKETS * sizeof(int), "the sampler");
}

static void free_sampler(Sampler *s) {
    free(s->heap);
    free(s->chosen);
    free(s->bucket_mass);
    free(s->bucket_count);
}

// xorshift64* (Marsaglia's xorshift with Vigna's multiplier): the top 32 bits.
static uint32_t random_u32(uint64_t *state) {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (uint32_t)((*state * 0x2545F4914F6CDD1Dull) >> 32);
}

// Uniform in [0, 1): the top 24 bits, as many as a float's mantissa holds.
static float random_f32(uint64_t *state) { return (random_u32(state) >> 8) / 16777216.0f; }

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

// Walks the cumulative distribution until it passes coin (in [0, 1)).
static int sample_from_all(const float *probs, int n, float coin) {
    float cdf = 0.0f;
    for (int i = 0; i < n; i++) {
        cdf += probs[i];
        if (coin < cdf) return i;
    }
    return n - 1; // rounding left the total just below coin
}

// Candidate order: more probable first; equal probabilities by lower id, so the
// order is the same on every machine.
static int ranks_before(ProbIndex a, ProbIndex b) {
    return a.prob > b.prob || (a.prob == b.prob && a.index < b.index);
}

static void sift_down(ProbIndex *heap, int n, int i) {
    for (;;) {
        int best = i, l = 2 * i + 1, r = l + 1;
        if (l < n && ranks_before(heap[l], heap[best])) best = l;
        if (r < n && ranks_before(heap[r], heap[best])) best = r;
        if (best == i) return;
        ProbIndex tmp = heap[i];
        heap[i] = heap[best], heap[best] = tmp;
        i = best;
    }
}

// Puts the tokens top-k and top-p keep into s->chosen, most likely first, and
// returns how many; *mass is their total probability. The vocabulary is never
// sorted: candidates come off a heap, one at a time, only as far as needed.
// Top-p alone keeps the shortest run whose mass exceeds topp. With top-k, the k
// most likely are kept, and top-p then applies to their renormalized mass.
static int select_candidates(Sampler *s, const float *probs, float *mass) {
    int n = s->vocab_size, use_topp = s->topp > 0.0f && s->topp < 1.0f;
    // Top-p alone never needs a token below (1 - topp) / (n - 1): were the run
    // to reach one, the n - 1 others would hold more than topp already.
    float cutoff = s->topk == 0 ? (1.0f - s->topp) / (n - 1) : 0.0f;
    int n_heap = 0;
    for (int i = 0; i < n; i++)
        if (probs[i] >= cutoff) s->heap[n_heap++] = (ProbIndex){probs[i], i};
    if (n_heap == 0) // a tiny topp over a near-uniform distribution: take everything
        for (int i = 0; i < n; i++) s->heap[n_heap++] = (ProbIndex){probs[i], i};
    for (int i = n_heap / 2 - 1; i >= 0; i--) sift_down(s->heap, n_heap, i);

    int limit = s->topk > 0 && s->topk < n_heap ? s->topk : n_heap;
    int n_chosen = 0;
    float cumulative = 0.0f;
    while (n_chosen < limit) {
        ProbIndex top = s->heap[0];
        s->heap[0] = s->heap[--n_heap];
        sift_down(s->heap, n_heap, 0);
        s->chosen[n_chosen++] = top;
        cumulative += top.prob;
        if (s->topk == 0 && cumulative > s->topp) break;
    }
    if (s->topk > 0 && use_topp) {
        float kept = cumulative;
        cumulative = 0.0f;
        for (int i = 0; i < n_chosen; i++) {
            cumulative += s->chosen[i].prob;
            if (cumulative > s->topp * kept) {
                n_chosen = i + 1;
                break;
            }
        }
    }
    *mass = cumulative;
    return n_chosen;
}

// In "Top-p over a large vocabulary", below: what the lines after select_candidates in
// sample() choose, without sorting all the candidates.
static int sample_topp(Sampler *s, const float *probs, float coin);

// Chooses the next token. Overwrites logits with probabilities.
static int sample(Sampler *s, float *logits) {
    int n = s->vocab_size;
    if (s->temperature == 0.0f) return argmax(logits, n);
    // A tiny temperature (-t 3e-38) would overflow logit / temperature to inf, and softmax
    // would make NaN of it. Measured from the largest logit, every other one is -inf or
    // finite: the softmax is 1 at the maximum (or shared by equal maxima), greedy in effect.
    // Only then: dividing the logits as they are keeps llama2.c's probabilities.
    // (A temperature of 1 or more never overflows: it only shrinks.)
    float max = logits[0], min = logits[0];
    for (int i = 1; i < n && s->temperature < 1.0f; i++) max = fmaxf(max, logits[i]), min = fminf(min, logits[i]);
    if (s->temperature < 1.0f && (isinf(max / s->temperature) || isinf(min / s->temperature)))
        for (int i = 0; i < n; i++) logits[i] -= max;
    for (int i = 0; i < n; i++) logits[i] /= s->temperature;
    // The kernel's softmax: llama2.c's probabilities to about 1e-7 (a seed picks llama2.c's tokens
    // unless the coin falls that close to a boundary), and over Llama 3's 128,256 logits 15 times
    // faster than the scalar one, which would take a few percent of a small model's token.
    kernels.softmax(logits, n);
    float coin = random_f32(&s->rng_state);
    if (s->topk == 0 && (s->topp <= 0.0f || s->topp >= 1.0f)) return sample_from_all(logits, n, coin);
    if (s->topk == 0) return sample_topp(s, logits, coin);
    float mass;
    int n_chosen = select_candidates(s, logits, &mass);
    float r = coin * mass, cdf = 0.0f; // sample within the kept mass
    for (int i = 0; i < n_chosen; i++) {
        cdf += s->chosen[i].prob;
        if (r < cdf) return s->chosen[i].index;
    }
    return s->chosen[n_chosen - 1].index;
}

// ============================================================================
// The loops: generate, perplexity, chat, tokenize

static double seconds_now(void); // in "Platform", below

static void check_prompt_fits(int n_tokens, int n_ctx, const char *what) {
    if (n_tokens > n_ctx)
        fatal("%s is %d tokens, longer than the model's context of %d positions", what, n_tokens, n_ctx);
}

// Runs n tokens through the model from position pos, in blocks of up to
// max_tokens, and returns the logits of the last one.
static float *feed_tokens(Model *m, const int *tokens, int n, int pos) {
    float *logits = NULL;
    for (int i = 0; i < n; i += m->state.max_tokens) {
        int block = n - i < m->state.max_tokens ? n - i : m->state.max_tokens;
        logits = forward(m, tokens + i, block, pos + i, i + block == n ? LOGITS_LAST : LOGITS_NONE);
    }
    return logits;
}

// Set by Ctrl-C during a chat's reply: the reply ends, the chat goes on.
// catch_interrupt (in "Platform", below) turns that on and off.
static volatile sig_atomic_t interrupted;
static void catch_interrupt(int on);

// How a run of sampled tokens ended.
typedef struct {
    int n_printed; // tokens sampled and printed
    int unfed;     // the last of them, when it was printed but not run through the model; else -1
    int pos;       // the position after the last token run through the model
} Stream;

// The loop at the heart of generate and chat: sample the next token from the
// logits, print it, run it through the model at position pos for the next
// logits, and again; until the model ends the text (</s>, <|eot_id|>, ...: see
// ends_text), max_new tokens are printed, the next would take position `end`,
// a stop string appears, Ctrl-C, or no one reads the output any more. prev is the token
// before the first (after <s>, a piece drops its leading space).
static Stream stream_tokens(Model *m, const Tokenizer *t, Sampler *sampler, Printer *printer, float *logits,
                            int prev, int pos, int end, int max_new) {
    Stream st = {0, -1, pos};
    for (;;) {
        int next = sample(sampler, logits);
        if (ends_text(t, next)) break;
        print_token(printer, t, prev, next);
        st.n_printed++;
        // Each token is streamed as it comes; a reader gone away (a closed pipe) ends the run.
        int reader_gone = fflush(printer->out) != 0 || ferror(printer->out);
        if (reader_gone || printer->stopped || interrupted || st.n_printed >= max_new || st.pos >= end) {
            st.unfed = next;
            break;
        }
        logits = forward(m, &next, 1, st.pos++, LOGITS_LAST);
        prev = next;
    }
    return st;
}

typedef struct {
    int n_prompt, n_generated;
    int n_fed; // of the prompt's tokens, those that went through the model: -n may cut it
    double prompt_seconds, generate_seconds;
} GenerateStats;

// Stop strings (--stop): text that ends generation where it appears.
typedef struct {
    const char **text;
    int n;
} Stops;

// Runs the prompt through the model, then samples until steps positions are
// used, the model emits <s> or </s>, a stop string appears, or the context is
// full. With echo, the prompt is printed first, as llama2.c does; without,
// only the continuation.
static GenerateStats generate(Model *m, const Tokenizer *t, Sampler *sampler, const char *prompt,
                              size_t prompt_len, int steps, int echo, const Stops *stops, FILE *out) {
    int n_prompt;
    int *prompt_tokens = encode(t, prompt, prompt_len, t->add_bos, 0, &n_prompt);
    if (n_prompt == 0) prompt_tokens[n_prompt++] = t->bos_id; // no <s> by the file's rule, and no text: the model needs one token
    if (steps <= 0 || steps > m->state.n_ctx) steps = m->state.n_ctx;
    check_prompt_fits(n_prompt, m->config.seq_len, "the prompt");
    GenerateStats stats = {n_prompt, 0, n_prompt < steps ? n_prompt : steps, 0.0, 0.0};
    Printer printer = make_printer(out, NULL, 0); // stop strings apply to the continuation only

    // The prompt, in blocks; only its last token's logits are kept. A prompt
    // longer than steps is cut there (llama2.c echoes one token more).
    double start = seconds_now();
    float *logits = feed_tokens(m, prompt_tokens, n_prompt < steps ? n_prompt : steps, 0);
    if (echo)
        for (int i = 1; i < n_prompt && i <= steps; i++) print_token(&printer, t, prompt_tokens[i - 1], prompt_tokens[i]);
    print_flush(&printer);
    double prompt_done = seconds_now();
    stats.prompt_seconds = prompt_done - start;

    // Then one token at a time: sample, print, feed it back.
    printer = make_printer(out, (const char *const *)stops->text, stops->n);
    if (n_prompt <= steps)
        stats.n_generated =
            stream_tokens(m, t, sampler, &printer, logits, prompt_tokens[n_prompt - 1], n_prompt, steps, INT_MAX).n_printed;
    print_flush(&printer);
    fputc('\n', out);
    fflush(out);
    stats.generate_seconds = seconds_now() - prompt_done;
    free(prompt_tokens);
    return stats;
}

// Perplexity: how surprised the model is by a text, exp of the mean negative
// log-likelihood of each token given those before it (1 would be certainty).
// The rule is llama.cpp's llama-perplexity, so that the two figures compare:
// the text is cut into windows of the cache's positions (-n), the rest
// dropped; each window starts at position 0 with its first token replaced by
// <s> (bos, or -1 for none), and only its second half is scored, every token
// there predicted with at least half a window of context.
typedef struct {
    int n_predicted;
    double mean_nll, perplexity;
} Perplexity;

static Perplexity perplexity(Model *m, const int *tokens, int n, int bos) {
    int vocab = m->config.vocab_size, window = m->state.n_ctx, first = window / 2;
    double nll = 0.0;
    int n_predicted = 0;
    int *chunk = xmalloc(window * sizeof(int), "a perplexity window");
    for (int start = 0; start + window <= n; start += window) {
        memcpy(chunk, tokens + start, window * sizeof(int));
        if (bos >= 0) chunk[0] = bos;
        for (int i = 0; i < window; i += m->state.max_tokens) {
            int block = window - i < m->state.max_tokens ? window - i : m->state.max_tokens;
            float *logits = forward(m, chunk + i, block, i, i + block <= first ? LOGITS_NONE : LOGITS_ALL);
            for (int b = 0; b < block && i + b + 1 < window; b++) {
                if (i + b < first) continue; // the first half is context only
                // -log softmax(logits)[next] = log(sum exp(logits)) - logits[next]
                const float *l = logits + (size_t)b * vocab;
                float max = l[0];
                for (int v = 1; v < vocab; v++) max = fmaxf(max, l[v]);
                double sum = 0.0;
                for (int v = 0; v < vocab; v++) sum += exp((double)l[v] - max);
                nll += log(sum) + max - l[chunk[i + b + 1]];
                n_predicted++;
            }
        }
    }
    free(chunk);
    Perplexity p = {n_predicted, nll / n_predicted, exp(nll / n_predicted)};
    return p;
}

// Prints the ids of text on one line, <s> first unless the vocabulary says not to.
static void tokenize(const Tokenizer *t, const char *text, size_t len, FILE *out) {
    int n;
    int *tokens = encode(t, text, len, t->add_bos, 0, &n);
    for (int i = 0; i < n; i++) fprintf(out, i ? " %d" : "%d", tokens[i]);
    fputc('\n', out);
    free(tokens);
}

// Text of any length: a growing buffer, always NUL-terminated.
typedef struct {
    char *data;
    size_t len, cap;
} Text;

static void text_append(Text *s, const char *p, size_t n) {
    if (s->len + n + 1 > s->cap) {
        s->cap = (s->len + n + 1) * 2;
        s->data = xrealloc(s->data, s->cap, "a text");
    }
    memcpy(s->data + s->len, p, n);
    s->len += n;
    s->data[s->len] = '\0';
}

static void text_append_str(Text *s, const char *p) { text_append(s, p, strlen(p)); }

// Whether the UTF-8 character at p[0..n) is whitespace to Python's str.isspace(), which
// Meta's chat code strips with: its length if so, else 0.
static int python_space(const char *p, size_t n) {
    int cl = utf8_char_len((const unsigned char *)p, n);
    if (cl == 0) return 0;
    uint32_t c = cl == 1 ? (unsigned char)p[0] : (unsigned char)p[0] & (0x7F >> cl); // the lead byte's bits
    for (int i = 1; i < cl; i++) c = c << 6 | ((unsigned char)p[i] & 0x3F);
    int space = (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
                (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
    return space ? cl : 0;
}

// Removes leading and trailing whitespace, as Meta's chat code strips each turn (Python's
// str.strip(): Unicode whitespace, not only C's isspace).
static void text_strip(Text *s) {
    size_t a = 0, b = s->len;
    for (int cl; a < b && (cl = python_space(s->data + a, b - a)) > 0;) a += cl;
    while (b > a) { // the last character starts at most 3 continuation bytes back
        size_t start = b - 1;
        while (start > a && b - start < 4 && ((unsigned char)s->data[start] & 0xC0) == 0x80) start--;
        int cl = python_space(s->data + start, b - start);
        if (cl == 0 || start + cl != b) break;
        b = start;
    }
    memmove(s->data, s->data + a, b - a);
    s->len = b - a;
    s->data[s->len] = '\0';
}

// Reads all of a stream, whatever its size.
static Text read_all(FILE *f, const char *name) {
    Text s = {0};
    char buf[65536];
    size_t n;
    text_append(&s, "", 0);
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) text_append(&s, buf, n);
    if (ferror(f)) fatal("cannot read %s: %s", name, strerror(errno));
    return s;
}

// Appends the next line of a stream, its newline included, NUL bytes and all;
// 0 at the end of the stream.
static int read_line(FILE *f, Text *line) {
    int c, any = 0;
    while ((c = getc(f)) != EOF) {
        char ch = (char)c;
        text_append(line, &ch, 1), any = 1;
        if (c == '\n') break;
    }
    return any;
}

// One trailing newline (\n, or \r\n) is dropped, as the shell's $(...) does, so
// that `echo "text" | ./run` prompts with "text". A lone \r is text, and stays.
static void drop_final_newline(Text *s) {
    if (s->len == 0 || s->data[s->len - 1] != '\n') return;
    s->data[--s->len] = '\0';
    if (s->len > 0 && s->data[s->len - 1] == '\r') s->data[--s->len] = '\0';
}

// Chat with a chat model, in its own format. Each family of chat models was
// fine-tuned on one layout of turns: Llama 2's is
//     <s>[INST] {user} [/INST] {reply} </s><s>[INST] {user} [/INST] ...
// (Meta's chat_completion: the system prompt folded into the first turn as
// "<<SYS>>\n{system}\n<</SYS>>\n\n{user}", each turn's content stripped of
// outer whitespace), Llama 3's
//     <|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n{user}<|eot_id|>
//     <|start_header_id|>assistant<|end_header_id|>\n\n{reply}<|eot_id|>...
// "Chat formats", below, holds the layouts and chooses one by the model's
// chat template. A layout is a sequence of control tokens, put in by id, and
// text, encoded a stretch at a time between them: <s>, </s>, <|eot_id|> are
// never text.
typedef enum {
    CHAT_LLAMA2, CHAT_LLAMA3, CHAT_LLAMA31, CHAT_LLAMA32, CHAT_MISTRAL, CHAT_MISTRAL_V1, CHAT_MISTRAL_V3,
    CHAT_MISTRAL_V3_TEKKEN, CHAT_MISTRAL_V7, CHAT_ZEPHYR, CHAT_CHATML, CHAT_FORMATS
} ChatFormat;

// The tokens of a conversation, laid out a turn at a time.
typedef struct {
    const Tokenizer *t;
    ChatFormat format;
    const char *date; // Llama 3.1 and 3.2's "Today Date: 26 Jul 2024" in the system turn
    int *ids;         // (n) tokens laid out and not yet fed to the model
    int n, cap;
    Text text;        // text since the last control token, not yet encoded
} ChatBuilder;

// Text of the layout.
static void chat_text(ChatBuilder *b, const char *s, size_t n) { text_append(&b->text, s, n); }
static void chat_text_str(ChatBuilder *b, const char *s) { chat_text(b, s, strlen(s)); }

// Encodes the text since the last control token.
static void chat_flush(ChatBuilder *b) {
    if (b->text.len == 0) return;
    int n;
    int *ids = encode(b->t, b->text.data, b->text.len, 0, 0, &n);
    if (b->n + n > b->cap) b->ids = xrealloc(b->ids, (b->cap = 2 * (b->n + n)) * sizeof(int), "a chat turn");
    memcpy(b->ids + b->n, ids, n * sizeof(int));
    b->n += n;
    b->text.len = 0;
    free(ids);
}

// A control token (none if id < 0).
static void chat_token(ChatBuilder *b, int id) {
    chat_flush(b);
    if (id < 0) return;
    if (b->n + 1 > b->cap) b->ids = xrealloc(b->ids, (b->cap = 2 * (b->n + 1)) * sizeof(int), "a chat turn");
    b->ids[b->n++] = id;
}

// In "Chat formats", below: the layout of each part of a conversation.
static void chat_begin(ChatBuilder *b, const char *system);
static void chat_user(ChatBuilder *b, const char *system, const char *user, size_t user_len, int first);
static void chat_close(ChatBuilder *b);

typedef struct {
    const char *system;     // -y, or NULL
    const char *first_turn; // -i, or NULL
    int reply_limit;        // -r: tokens in one reply at most; 0: half the context still free
    Stops stops;            // --stop
    int interactive;        // a person at a terminal: prompts on stderr, Ctrl-C ends a reply
    ChatFormat format;
    const char *date;       // today, for the formats that name it
} ChatOptions;

typedef struct {
    int turns;          // user turns answered
    int positions;      // positions of the context the conversation filled
    long forwarded;     // tokens that went through the model: equal to positions, as none is read twice
} ChatStats;

// Runs the conversation: turns from options->first_turn and then one per line
// of `in`, replies streamed to `out`, a line after each. Each turn appends
// only its own tokens: the KV cache keeps the conversation so far. It ends at
// the end of input, or when the context cannot hold another turn.
static ChatStats chat(Model *m, const Tokenizer *t, Sampler *sampler, const ChatOptions *o, FILE *in, FILE *out) {
    ChatStats stats = {0, 0, 0};
    long forwarded_before = m->n_forwarded;
    int n_ctx = m->state.n_ctx, pos = 0;
    // Tokens wait in the builder until they go through the model: those that close
    // the last reply, with the next turn.
    ChatBuilder turn = {t, o->format, o->date, NULL, 0, 0, {0}};
    chat_begin(&turn, o->system);
    for (int first = 1;; first = 0) {
        Text user = {0};
        if (first && o->first_turn) {
            text_append_str(&user, o->first_turn);
        } else {
            if (o->interactive) fputs("> ", stderr), fflush(stderr);
            if (!read_line(in, &user)) { // end of input: the chat is over
                if (o->interactive) fputc('\n', stderr);
                free(user.data);
                break;
            }
        }
        text_strip(&user);
        if (user.len == 0) { // an empty line is not a turn
            free(user.data);
            continue;
        }
        chat_user(&turn, o->system, user.data, user.len, stats.turns == 0);
        chat_flush(&turn);
        free(user.data);
        if (pos + turn.n + 1 > n_ctx && stats.turns == 0) // a reply that can never start
            fatal("the first turn needs %d positions with its reply's first token, and the context has %d; "
                  "expected %s", turn.n + 1, n_ctx, n_ctx < m->config.seq_len ? "a larger -n, or a shorter turn" : "a shorter turn");
        if (pos + turn.n + 1 > n_ctx) { // the turn and at least one token of reply
            warn("the conversation fills %d of its %d positions and the next turn needs %d more; chat ended", pos,
                 n_ctx, turn.n + 1);
            break;
        }
        // The last reply's closing tokens and this turn go through the model together.
        float *logits = feed_tokens(m, turn.ids, turn.n, pos);
        pos += turn.n;
        turn.n = 0;

        // The reply, streamed, until the model ends it, the reply limit, a stop string or Ctrl-C.
        // Without -r, a reply takes at most half the context still free, so that later turns have room.
        int limit = o->reply_limit ? o->reply_limit : (n_ctx - pos) / 2;
        interrupted = 0;
        if (o->interactive) catch_interrupt(1);
        Printer printer = make_printer(out, (const char *const *)o->stops.text, o->stops.n);
        // After <s>, so that the reply's first piece drops its leading space. The last
        // position stays free for the token that closes the exchange.
        Stream reply = stream_tokens(m, t, sampler, &printer, logits, t->bos_id, pos, n_ctx - 1, limit);
        pos = reply.pos;
        if (reply.unfed >= 0) chat_token(&turn, reply.unfed); // sampled but not yet in the cache
        chat_close(&turn); // every exchange ends the format's way: </s>, <|eot_id|>, ...
        if (o->interactive) catch_interrupt(0);
        print_flush(&printer);
        fputc('\n', out);
        fflush(out);
        stats.turns++;
        if (ferror(out)) break; // and the chat
        if (pos + turn.n >= n_ctx) {
            warn("the conversation filled its %d positions; chat ended", n_ctx);
            break;
        }
    }
    free(turn.ids), free(turn.text.data);
    stats.positions = pos;
    stats.forwarded = m->n_forwarded - forwarded_before;
    return stats;
}

// ============================================================================
// What a first reading may skip: the program above is complete for float32
// weights. What follows runs the other weight types (int8, 16-bit floats,
// GGUF's blocks), reads GGUF files and chat formats, computes the kernels
// faster with SIMD instructions, meets the operating system, and parses the
// command line.
// ============================================================================

// ============================================================================
// Weight types: int8, 16-bit floats and GGUF's blocks
//
// Every weight type but float32: how its numbers are stored, its plain
// decoders and kernels (each the definition of what it computes, as the
// float32 ones above are), and the quantized input the int8 kernels take.
// weight_types, below, has one row per type; docs/weight-types.md lists the
// edits a new type needs.

// A block type's input is quantized too, in groups of QBLOCK values, each with
// its own scale: every block type's sub-blocks (16 or 32 values) fit in one.
#define QBLOCK 32

// Quantizes x (n) to int8 in groups of gs: each group gets the scale that
// maps its largest magnitude to 127, so x ~= q * scale. Rounds to nearest even.
// Also keeps each group's sum of q, and unless sum16 is NULL each 16's sum
// (gs a multiple of 16), which the SIMD kernels of blocks of 256 need (block256_rows_avx512).
static void quantize(int8_t *q, float *scale, int32_t *sum, int32_t *sum16, const float *x, int n, int gs) {
    for (int g = 0; g < n / gs; g++) {
        const float *xg = x + (size_t)g * gs;
        float amax = 0.0f;
        for (int i = 0; i < gs; i++) {
            float a = fabsf(xg[i]);
            if (a > amax) amax = a; // not fmaxf: that is a libm call without -ffast-math
        }
        float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        scale[g] = amax / 127.0f;
        int32_t total = 0;
        for (int i = 0; i < gs; i++) {
            q[(size_t)g * gs + i] = (int8_t)lrintf(xg[i] * inv);
            total += q[(size_t)g * gs + i];
        }
        sum[g] = total;
    }
    for (int k = 0; sum16 && k < n / 16; k++) {
        sum16[k] = 0;
        for (int i = 16 * k; i < 16 * k + 16; i++) sum16[k] += q[i];
    }
}

// The int8 copy of a matmul's input, made once per matmul input and kept in
// the state (State.xq), one row per token.
typedef struct Quantized {
    int8_t *q;       // (max_tokens, max(dim, hidden_dim)) the input in int8
    float *scale;    // (max_tokens, max(dim, hidden_dim) / group_size)
    int32_t *sum;    // (max_tokens, max(dim, hidden_dim) / group_size) each group's sum of int8 values
    int32_t *sum16;  // (max_tokens, max(dim, hidden_dim) / 16 + 1) each 16's sum, for GGUF's block types
    float *scaled_sum; // (max_tokens, max(dim, hidden_dim) / group_size) scale * sum, for GGUF's block types
    int8_t *runs32;  // (max_tokens, max(dim, hidden_dim)) q in two other orders, for the SIMD kernels
    int8_t *runs16;  //   of GGUF's blocks of 256 (see interleave_runs)
} Quantized;

static Quantized *build_quantized(size_t tokens, size_t widest, int group_size) {
    Quantized *xq = xmalloc(sizeof(Quantized), "activations");
    xq->q = xmalloc(tokens * widest, "activations");
    xq->scale = xmalloc(tokens * (widest / group_size) * sizeof(float), "activations");
    xq->sum = xmalloc(tokens * (widest / group_size) * sizeof(int32_t), "activations");
    xq->sum16 = xmalloc(tokens * (widest / 16 + 1) * sizeof(int32_t), "activations");
    xq->scaled_sum = xmalloc(tokens * (widest / group_size) * sizeof(float), "activations");
    xq->runs32 = xmalloc(tokens * widest, "activations");
    xq->runs16 = xmalloc(tokens * widest, "activations");
    return xq;
}

static void free_quantized(Quantized *xq) {
    if (!xq) return;
    free(xq->q), free(xq->scale), free(xq->sum), free(xq->sum16), free(xq->scaled_sum), free(xq->runs32), free(xq->runs16);
    free(xq);
}

// The SIMD kernels of GGUF's blocks of 256 take a block's values in an order
// that suits how the block packs them: runs of 32 values (Q4_K, Q5_K, IQ4_XS;
// and eight blocks of Q4_0 or IQ4_NL) 8 values of each run at a time, runs of
// 16 (Q2_K, Q3_K, Q6_K) 4 at a time. Their input comes in the same orders,
// made once per input: within each whole 256 values, q32[64 s + 8 k + i] =
// q[32 k + 8 s + i] and q16[64 s + 4 k + i] = q[16 k + 4 s + i], for steps s < 4.
static void interleave_runs(int8_t *q32, int8_t *q16, const int8_t *q, int n) {
    int b = 0;
    for (; b + 256 <= n; b += 256)
        for (int s = 0; s < 4; s++) {
            for (int k = 0; k < 8; k++) memcpy(q32 + b + 64 * s + 8 * k, q + b + 32 * k + 8 * s, 8);
            for (int k = 0; k < 16; k++) memcpy(q16 + b + 64 * s + 4 * k, q + b + 16 * k + 4 * s, 4);
        }
    memcpy(q32 + b, q + b, n - b), memcpy(q16 + b, q + b, n - b); // a last part of fewer than 256: as it is
}

// Token t's row of the input, quantized, for quantize_input.
static void quantize_token(Model *m, const Input *in, int t) {
    int n = in->n, gs = m->config.group_size;
    Quantized *xq = m->state.xq;
    size_t groups = (size_t)t * (n / gs);
    int32_t *sum16 = m->blocks ? xq->sum16 + (size_t)t * (n / 16) : NULL;
    kernels.quantize(xq->q + (size_t)t * n, xq->scale + groups, xq->sum + groups, sum16, in->f + (size_t)t * n, n, gs);
    if (!m->blocks) return;
    interleave_runs(xq->runs32 + (size_t)t * n, xq->runs16 + (size_t)t * n, xq->q + (size_t)t * n, n);
    for (size_t g = groups; g < groups + n / gs; g++) xq->scaled_sum[g] = xq->scale[g] * (float)xq->sum[g];
}

// prepare_input's second half: the input quantized, for int8 weights. An
// input whose width is not whole groups feeds no int8 matrix (GGUF exports
// keep such matrices in F16), so it stays float only. A lone token's goes
// without a parallel region at all: one that runs on a single thread (an
// `if` clause that is false) still cost about as much as the step itself
// (bench/NOTES.md).
static void quantize_input(Model *m, Input *in) {
    int n = in->n, tokens = in->tokens, gs = m->config.group_size, t;
    Quantized *xq = m->state.xq;
    if (n % gs != 0) return;
    if (tokens == 1) quantize_token(m, in, 0);
    else {
#pragma omp parallel for
        for (t = 0; t < tokens; t++) quantize_token(m, in, t);
    }
    in->q = xq->q, in->scale = xq->scale, in->sum = xq->sum, in->sum16 = xq->sum16;
    if (m->blocks) in->scaled_sum = xq->scaled_sum, in->q_runs32 = xq->runs32, in->q_runs16 = xq->runs16;
}

// llama2.c's int8 weights (Q8Rows): w and x in int8 with a scale per group of gs (w_stride and
// x_stride count values, multiples of gs; w_scale and x_scale hold
// w_stride / gs and x_stride / gs scales per row and per token). Each group's
// integer dot product is exact; only its scaling and the sum over groups are
// in float. x_sum holds each group's sum of x values, as quantize() makes it.
static void q8_rows_scalar(float *out, size_t out_stride, const int8_t *wq, const float *w_scale, size_t w_stride,
                           const int8_t *xq, const float *x_scale, const int32_t *x_sum, size_t x_stride, int n, int gs,
                           int rows, int tokens) {
    (void)x_sum; // a shortcut for the SIMD kernels only
    for (int t = 0; t < tokens; t++) {
        for (int r = 0; r < rows; r++) {
            const int8_t *wr = wq + r * w_stride, *xt = xq + t * x_stride;
            const float *wr_scale = w_scale + r * (w_stride / gs), *xt_scale = x_scale + t * (x_stride / gs);
            float sum = 0.0f;
            for (int g = 0; g < n / gs; g++) {
                int32_t dot = 0;
                for (int i = g * gs; i < (g + 1) * gs; i++) dot += wr[i] * xt[i];
                sum += (float)dot * (wr_scale[g] * xt_scale[g]);
            }
            out[t * out_stride + r] = sum;
        }
    }
}

// 16-bit floats. IEEE half (F16): 1 sign, 5 exponent, 10 mantissa bits.
// bfloat16 (BF16): the top half of a float32, so widening it is a shift.
static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exponent = (h >> 10) & 0x1F, mantissa = h & 0x3FF, bits;
    float f;
    if (exponent == 0x1F) { // infinity or NaN
        bits = sign | 0x7F800000u | mantissa << 13;
    } else if (exponent != 0) { // normal: rebias the exponent from 15 to 127
        bits = sign | (exponent + 112) << 23 | mantissa << 13;
    } else { // zero or subnormal: mantissa * 2^-24, exact in float32
        f = mantissa * (1.0f / 16777216.0f);
        memcpy(&bits, &f, 4);
        bits |= sign;
    }
    memcpy(&f, &bits, 4);
    return f;
}

// float32 to IEEE half, rounded to nearest even (for a float16 KV cache):
// too large gives infinity, too small a subnormal or zero.
static uint16_t f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000, exponent = (x >> 23) & 0xFF, mantissa = x & 0x7FFFFF;
    if (exponent == 0xFF) return (uint16_t)(sign | 0x7C00 | (mantissa ? 0x200 : 0)); // infinity, NaN
    int e = (int)exponent - 112;                                                       // rebias from 127 to 15
    if (e >= 31) return (uint16_t)(sign | 0x7C00);
    uint32_t half, rest, tie;
    if (e <= 0) { // a subnormal half: the 24-bit mantissa shifted to 10 + e bits, or 0
        if (e < -10) return (uint16_t)sign;
        mantissa |= 0x800000;
        int shift = 14 - e;
        half = mantissa >> shift, rest = mantissa & ((1u << shift) - 1), tie = 1u << (shift - 1);
    } else {
        half = (uint32_t)e << 10 | mantissa >> 13, rest = mantissa & 0x1FFF, tie = 0x1000;
    }
    if (rest > tie || (rest == tie && (half & 1))) half++; // a carry into the exponent is right, up to infinity
    return (uint16_t)(sign | half);
}

// n floats into float16, as a float16 KV cache stores keys and values.
static void to_f16_scalar(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = f32_to_f16(src[i]);
}

static float bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

// Attention's last step with a float16 cache: as weighted_rows_scalar, with v
// in float16 (WeightedHalfRows).
static void weighted_f16_rows_scalar(float *out, size_t out_stride, const float *a, size_t a_stride, const uint16_t *v,
                                     size_t v_stride, int n, int rows, int queries) {
    for (int q = 0; q < queries; q++)
        for (int i = 0; i < n; i++) { // each output summed in the same order as weighted_rows_scalar's
            float sum = 0.0f;
            for (int r = 0; r < rows; r++) sum += a[q * a_stride + r] * f16_to_f32(v[r * v_stride + i]);
            out[q * out_stride + i] = sum;
        }
}

// A 16-bit float of either kind (WEIGHT_F16 or WEIGHT_BF16).
static float half_to_f32(uint16_t h, WeightType type) { return type == WEIGHT_F16 ? f16_to_f32(h) : bf16_to_f32(h); }

static uint16_t load_u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static uint32_t load_u32(const uint8_t *p) { return read_u32le(p); }

// GGUF's block types, decoded. Every one of them stores a block's values as
// small integers q with, for each run of 16 values, a scale and an offset
// (the format's minimum, or 0):
//     w[j] = scale[j / 16] * q[j] + offset[j / 16]
// The scales themselves are often quantized: small integers times one float16
// scale for the whole block of 256 (the K-quants' "super-block").
typedef struct {
    int8_t q[256];                 // (values of the block)
    float scale[16], offset[16];   // (values / 16)
} Block;

// IQ4_NL and IQ4_XS: a 4-bit index picks one of these 16 levels, spaced
// unevenly, closer together near zero, where most weights are.
static const int8_t iq4_levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// The layouts, byte by byte (d, m, dmin: float16). Each type has two plain
// decoders, which are the definition of the type: its scales and offsets per
// 16 values, and its values.

// All 16 scales d, all offsets 0: where every type starts.
static void fill_scales(float scale[16], float offset[16], float d) {
    for (int k = 0; k < 16; k++) scale[k] = d, offset[k] = 0.0f;
}

// Q8_0, Q4_0, Q5_0, IQ4_NL: d first, then the values.
static void scales_d(const uint8_t *b, float scale[16], float offset[16]) {
    fill_scales(scale, offset, f16_to_f32(load_u16(b)));
}

// Q4_1, Q5_1: d, m first: w = d q + m.
static void scales_d_m(const uint8_t *b, float scale[16], float offset[16]) {
    fill_scales(scale, offset, f16_to_f32(load_u16(b)));
    offset[0] = offset[1] = f16_to_f32(load_u16(b + 2));
}

// Q2_K: byte k (of 16 first): scale k in its low nibble, minimum k in its high; d, dmin last (80).
static void scales_q2_k(const uint8_t *b, float scale[16], float offset[16]) {
    float d = f16_to_f32(load_u16(b + 80)), dmin = f16_to_f32(load_u16(b + 82));
    for (int k = 0; k < 16; k++) scale[k] = d * (b[k] & 15), offset[k] = -dmin * (b[k] >> 4);
}

// Q3_K: 12 bytes at 96, d last (108). Scale k, 6 bits stored + 32: low 4 bits in the nibbles
// of bytes 0..7 (k < 8: low nibble of byte k; else high of byte k - 8), top 2 bits in bits
// 2 (k / 4)..+1 of byte 8 + k % 4.
static void scales_q3_k(const uint8_t *b, float scale[16], float offset[16]) {
    const uint8_t *s = b + 96;
    float d = f16_to_f32(load_u16(b + 108));
    fill_scales(scale, offset, d);
    for (int k = 0; k < 16; k++) {
        int low4 = k < 8 ? s[k] & 15 : s[k - 8] >> 4, top2 = (s[8 + k % 4] >> (2 * (k / 4))) & 3;
        scale[k] = d * ((low4 | top2 << 4) - 32);
    }
}

// Scale and minimum k (0..7) of a Q4_K or Q5_K block, 6 bits each, packed in
// 12 bytes: those of 0..3 in the low 6 bits of bytes 0..3 and 4..7; those of
// 4..7 in the nibbles of bytes 8..11, with their top 2 bits in the top 2 bits
// of bytes 0..3 (scales) and 4..7 (minimums).
static void k_scale_min(const uint8_t *s, int k, int *scale, int *min) {
    if (k < 4) {
        *scale = s[k] & 63, *min = s[k + 4] & 63;
    } else {
        *scale = (s[k + 4] & 15) | (s[k - 4] >> 6) << 4;
        *min = (s[k + 4] >> 4) | (s[k] >> 6) << 4;
    }
}

// Q4_K, Q5_K: d, dmin, then 12 bytes of 6-bit scales and minimums, one per 32 values.
static void scales_q4_k(const uint8_t *b, float scale[16], float offset[16]) {
    float d = f16_to_f32(load_u16(b)), dmin = f16_to_f32(load_u16(b + 2));
    for (int k = 0; k < 16; k++) {
        int sc, mn;
        k_scale_min(b + 4, k / 2, &sc, &mn);
        scale[k] = d * sc, offset[k] = -dmin * mn;
    }
}

// Q6_K: 16 int8 scales at 192, d last (208).
static void scales_q6_k(const uint8_t *b, float scale[16], float offset[16]) {
    float d = f16_to_f32(load_u16(b + 208));
    fill_scales(scale, offset, d);
    for (int k = 0; k < 16; k++) scale[k] = d * (int8_t)b[192 + k];
}

// IQ4_XS: d, then 16 bits of scale tops, 4 bytes of scale nibbles: scale s of 32 values, 6 bits
// stored + 32, in nibble s of bytes 4..7 and bits 2 s..2 s + 1 of the tops.
static void scales_iq4_xs(const uint8_t *b, float scale[16], float offset[16]) {
    float d = f16_to_f32(load_u16(b));
    uint16_t tops = load_u16(b + 2);
    fill_scales(scale, offset, d);
    for (int s = 0; s < 8; s++) {
        int sc = ((b[4 + s / 2] >> (4 * (s % 2))) & 15) | ((tops >> (2 * s)) & 3) << 4;
        scale[2 * s] = scale[2 * s + 1] = d * (sc - 32);
    }
}

// Then the values (a K-quant's 256 run in chunks of 32 or 64 whose bits share bytes).

// Q8_0: 32 int8 after d.
static void values_q8_0(const uint8_t *b, int8_t q[256]) {
    for (int j = 0; j < 32; j++) q[j] = (int8_t)b[2 + j];
}

// 16 bytes of nibbles: value j in the low nibble of byte j, value j + 16 in its
// high nibble; each minus center, or looked up in levels.
static void nibbles32(const uint8_t *qs, int8_t q[256], int center, const int8_t *levels) {
    for (int j = 0; j < 16; j++) {
        int lo = qs[j] & 15, hi = qs[j] >> 4;
        q[j] = (int8_t)(levels ? levels[lo] : lo - center);
        q[j + 16] = (int8_t)(levels ? levels[hi] : hi - center);
    }
}
static void values_q4_0(const uint8_t *b, int8_t q[256]) { nibbles32(b + 2, q, 8, NULL); }     // after d; q - 8
static void values_q4_1(const uint8_t *b, int8_t q[256]) { nibbles32(b + 4, q, 0, NULL); }     // after d and m
static void values_iq4_nl(const uint8_t *b, int8_t q[256]) { nibbles32(b + 2, q, 0, iq4_levels); } // after d

// Q5_0 (after d; q - 16) and Q5_1 (after d and m): 32 high bits (bit j: value
// j's 5th bit), then nibbles as Q4_0's.
static void fives32(const uint8_t *b, int8_t q[256], int center) {
    uint32_t high = load_u32(b);
    const uint8_t *low = b + 4;
    for (int j = 0; j < 16; j++) {
        q[j] = (int8_t)(((low[j] & 15) | ((high >> j) & 1) << 4) - center);
        q[j + 16] = (int8_t)(((low[j] >> 4) | ((high >> (j + 16)) & 1) << 4) - center);
    }
}
static void values_q5_0(const uint8_t *b, int8_t q[256]) { fives32(b + 2, q, 16); }
static void values_q5_1(const uint8_t *b, int8_t q[256]) { fives32(b + 4, q, 0); }

// Q2_K: 64 bytes of 2-bit values at 16: each 128 values, 32 bytes, value 32 i + l in bits 2 i..+1 of byte l.
static void values_q2_k(const uint8_t *b, int8_t q[256]) {
    for (int h = 0; h < 2; h++)
        for (int i = 0; i < 4; i++)
            for (int l = 0; l < 32; l++) q[128 * h + 32 * i + l] = (int8_t)((b[16 + 32 * h + l] >> (2 * i)) & 3);
}

// Q3_K: 32 bytes of high bits, then 2-bit values as Q2_K's at 32; value 32 i + l of half h
// has its high bit in bit 4 h + i of byte l; q - 4 when it is 0.
static void values_q3_k(const uint8_t *b, int8_t q[256]) {
    for (int h = 0; h < 2; h++)
        for (int i = 0; i < 4; i++)
            for (int l = 0; l < 32; l++)
                q[128 * h + 32 * i + l] = (int8_t)(((b[32 + 32 * h + l] >> (2 * i)) & 3) - ((b[l] >> (4 * h + i)) & 1 ? 0 : 4));
}

// Q4_K: 128 bytes of nibbles at 16: each 64 values, 32 bytes, value l in the low nibble of byte l,
// value 32 + l in its high nibble. Q5_K: 32 bytes of 5th bits at 16, the nibbles at 48; for
// chunk c of 64, bits 2 c and 2 c + 1 of byte l.
static void nibbles256(const uint8_t *b, int8_t q[256], int five) {
    const uint8_t *high = b + 16, *qs = b + 16 + 32 * five;
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            int lo = qs[32 * c + l] & 15, hi = qs[32 * c + l] >> 4;
            if (five) lo |= ((high[l] >> (2 * c)) & 1) << 4, hi |= ((high[l] >> (2 * c + 1)) & 1) << 4;
            q[64 * c + l] = (int8_t)lo, q[64 * c + 32 + l] = (int8_t)hi;
        }
}
static void values_q4_k(const uint8_t *b, int8_t q[256]) { nibbles256(b, q, 0); }
static void values_q5_k(const uint8_t *b, int8_t q[256]) { nibbles256(b, q, 1); }

// Q6_K: 128 bytes of low nibbles, 64 of 2-bit highs; q - 32. Each 128 values: 64 low bytes and
// 32 high; for l < 32, values l, 32 + l, 64 + l, 96 + l take the low nibbles of ql[l],
// ql[32 + l], then their high nibbles, and bits 0-1, 2-3, 4-5, 6-7 of qh[l].
static void values_q6_k(const uint8_t *b, int8_t q[256]) {
    const uint8_t *ql = b, *qh = b + 128;
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++)
            for (int i = 0; i < 4; i++) {
                int low = ql[64 * h + l + 32 * (i & 1)] >> (4 * (i >> 1)) & 15, top = (qh[32 * h + l] >> (2 * i)) & 3;
                q[128 * h + 32 * i + l] = (int8_t)((low | top << 4) - 32);
            }
}

// IQ4_XS: 128 bytes of nibbles at 8, as IQ4_NL's: 16 bytes per 32 values.
static void values_iq4_xs(const uint8_t *b, int8_t q[256]) {
    for (int s = 0; s < 8; s++) nibbles32(b + 8 + 16 * s, q + 32 * s, 0, iq4_levels);
}

// The weight types: one row each. A new block type is a row here, its two
// decoders above, and a kernel in each set's table (docs/weight-types.md
// lists every edit; the tests check that none is missing).
typedef struct {
    int values_at, values_bytes; // where a block's values are: dealt out to the panel's lines (0 bytes: no panels)
    int plus_128;                // the values are int8, stored as q + 128 (unsigned, for vpdpbusd)
    int words[6];                // the block's other bytes (its scales), in order, cut in words of these sizes
} PanelLayout;

typedef struct {
    const char *name;  // as GGUF files and llama.cpp name it
    int ggml_id;       // its id in GGUF's tensor table (-1: none)
    int values, bytes; // a block's values and bytes (F32, F16, BF16: one value of 4 or 2 bytes; Q8: of 1)
    void (*decode_scales)(const uint8_t *block, float scale[16], float offset[16]); // block types: the plain decoders
    void (*decode_values)(const uint8_t *block, int8_t q[256]);
    PanelLayout panel; // how repack_weights lays its rows out (see "Rows laid out again")
} WeightTypeInfo;

#define NO_PANELS {0} // the rows stay as stored
static const WeightTypeInfo weight_types[WEIGHT_TYPES] = {
    [WEIGHT_F32] = {"F32", 0, 1, 4, NULL, NULL, NO_PANELS},
    [WEIGHT_Q8] = {"Q8 (llama2.c)", -1, 1, 1, NULL, NULL, NO_PANELS},          // and a float32 scale per group_size values, apart
    [WEIGHT_F16] = {"F16", 1, 1, 2, NULL, NULL, NO_PANELS},
    [WEIGHT_BF16] = {"BF16", 30, 1, 2, NULL, NULL, NO_PANELS},
    [WEIGHT_Q8_0] = {"Q8_0", 8, 32, 34, scales_d, values_q8_0, {2, 32, 1, {2}}}, // int8 values, a float16 scale per 32
    [WEIGHT_Q4_0] = {"Q4_0", 2, 32, 18, scales_d, values_q4_0, {2, 16, 0, {2}}}, // 4-bit values, a float16 scale per 32
    [WEIGHT_Q4_1] = {"Q4_1", 3, 32, 20, scales_d_m, values_q4_1, NO_PANELS},   // 4-bit, a float16 scale and minimum per 32
    [WEIGHT_Q5_0] = {"Q5_0", 6, 32, 22, scales_d, values_q5_0, NO_PANELS},     // 5-bit values, a float16 scale per 32
    [WEIGHT_Q5_1] = {"Q5_1", 7, 32, 24, scales_d_m, values_q5_1, NO_PANELS},   // 5-bit, a float16 scale and minimum per 32
    [WEIGHT_IQ4_NL] = {"IQ4_NL", 20, 32, 18, scales_d, values_iq4_nl, NO_PANELS}, // 4-bit indices into 16 levels, a scale per 32
    [WEIGHT_Q2_K] = {"Q2_K", 10, 256, 84, scales_q2_k, values_q2_k, NO_PANELS}, // 2-bit, a 4-bit scale and minimum per 16
    [WEIGHT_Q3_K] = {"Q3_K", 11, 256, 110, scales_q3_k, values_q3_k, NO_PANELS}, // 3-bit, a 6-bit scale per 16
    [WEIGHT_Q4_K] = {"Q4_K", 12, 256, 144, scales_q4_k, values_q4_k,           // 4-bit, a 6-bit scale and minimum per 32
                     {16, 128, 0, {2, 2, 4, 4, 4}}},
    [WEIGHT_Q5_K] = {"Q5_K", 13, 256, 176, scales_q4_k, values_q5_k, NO_PANELS}, // 5-bit, a 6-bit scale and minimum per 32
    [WEIGHT_Q6_K] = {"Q6_K", 14, 256, 210, scales_q6_k, values_q6_k, NO_PANELS}, // 6-bit, an 8-bit scale per 16
    [WEIGHT_IQ4_XS] = {"IQ4_XS", 23, 256, 136, scales_iq4_xs, values_iq4_xs, NO_PANELS}, // as IQ4_NL, a 6-bit scale per 32
};

static int is_block_type(WeightType type) { return type >= WEIGHT_Q8_0; }
static size_t block_bytes(WeightType type) { return (size_t)weight_types[type].bytes; }

// A whole block, decoded by its type's plain decoders.
static void decode_block(WeightType type, const uint8_t *b, Block *out) {
    weight_types[type].decode_scales(b, out->scale, out->offset);
    weight_types[type].decode_values(b, out->q);
}

// F16 and BF16 weights (HalfRows): like F32Rows, with w in 16-bit floats.
static void half_rows_scalar(float *out, size_t out_stride, const uint16_t *w, size_t w_stride, const float *x,
                             size_t x_stride, int n, int rows, int tokens, WeightType type) {
    for (int r = 0; r < rows; r++)
        for (int t = 0; t < tokens; t++) {
            float sum = 0.0f;
            for (int j = 0; j < n; j++) sum += half_to_f32(w[r * w_stride + j], type) * x[t * x_stride + j];
            out[t * out_stride + r] = sum;
        }
}

static void f16_rows_scalar(float *out, size_t out_stride, const uint16_t *w, size_t w_stride, const float *x,
                            size_t x_stride, int n, int rows, int tokens) {
    half_rows_scalar(out, out_stride, w, w_stride, x, x_stride, n, rows, tokens, WEIGHT_F16);
}

static void bf16_rows_scalar(float *out, size_t out_stride, const uint16_t *w, size_t w_stride, const float *x,
                             size_t x_stride, int n, int rows, int tokens) {
    half_rows_scalar(out, out_stride, w, w_stride, x, x_stride, n, rows, tokens, WEIGHT_BF16);
}

// GGUF's block types (BlockRows): each row is x->n / values blocks, rows
// row_bytes apart; x is the matmul's input, quantized in groups of QBLOCK,
// like Q8Rows' x. A block at a time, decoded once for every token: each run of 16 values an
// integer dot product with the input's int8 values, times its scale, plus the
// offset times the input's sum, all times the input group's scale.
static void add_block_products(WeightType type, float *out, size_t out_stride, const uint8_t *block, int b,
                               const Input *in) {
    int values = weight_types[type].values;
    size_t x_stride = in->n;
    Block decoded;
    decode_block(type, block, &decoded);
    for (int t = 0; t < in->tokens; t++) {
        const int8_t *x = in->q + t * x_stride + b * values;
        const float *xs = in->scale + t * (x_stride / QBLOCK) + b * (values / QBLOCK);
        float sum = 0.0f;
        for (int k = 0; k < values / 16; k++) {
            int32_t dot = 0, total = 0;
            for (int j = 16 * k; j < 16 * k + 16; j++) dot += decoded.q[j] * x[j], total += x[j];
            sum += (decoded.scale[k] * dot + decoded.offset[k] * total) * xs[k / 2];
        }
        out[t * out_stride] += sum;
    }
}

static void blocks_rows_scalar(WeightType type, float *out, size_t out_stride, const uint8_t *w, size_t row_bytes,
                               const Input *in, int rows) {
    int values = weight_types[type].values;
    for (int r = 0; r < rows; r++) {
        for (int t = 0; t < in->tokens; t++) out[t * out_stride + r] = 0.0f;
        for (int b = 0; b < in->n / values; b++)
            add_block_products(type, out + r, out_stride, w + r * row_bytes + b * block_bytes(type), b, in);
    }
}

// ----------------------------------------------------------------------------
// Rows laid out again for the fast kernels: panels
//
// A prompt's int8 kernel multiplies 16 rows by a few tokens at once, each
// vpdpbusd taking 4 values of each of the 16 rows, as unsigned bytes: it
// wants the rows interleaved 4 values at a time. Shuffled so for every block
// of prompt tokens, the rows cost two thirds as much again as the products
// (bench/NOTES.md); with -l read the weights are our own copy, so
// repack_weights lays them out so once, at start-up, and generation reads the
// same panels (no second copy).
// With -l map the file's pages stay as they are, and so do their kernels.
//
// A panel is PACKED_ROWS consecutive rows, in the same bytes they took in the
// file. A "group" is a block of each of the 16 rows. First come the groups'
// values, group by group: a line of 64 bytes holds 4 bytes of each row's
// block in turn (row r at bytes 4 r..4 r + 3), so line k holds the block's
// value bytes 4 k..4 k + 3 (the type's PanelLayout says which bytes those
// are), as they are, or as q + 128 for Q8_0's int8 values. Then the groups'
// other bytes (their scales), group by group, cut in the words the layout
// names: word w of the 16 rows, then word w + 1, and so on. So a vector of 16
// lanes finds a row in each lane: values 4 at a time, scales a word at a time.
//   Q8_0: 8 lines, values 4 k.. (as q + 128); then 16 float16 scales.
//   Q4_0: 4 lines, whose low nibbles are values 4 k.., high ones 16 + 4 k..
//   Q4_K: 32 lines: line 8 c + m holds values 64 c + 4 m.. in its low nibbles
//         and 64 c + 32 + 4 m.. in its high ones; then d, dmin (16 each) and
//         the 12 bytes of 6-bit scales and minimums as 3 words of 4.
// A matrix's last rows short of a panel keep the file's layout.
#define PACKED_ROWS 16 // one row a 32-bit lane of a zmm; matmul's blocks of rows are whole panels (or end the matrix)

static int has_packed_layout(WeightType type) { return weight_types[type].panel.values_bytes > 0; }

// Bytes of a group's values in a panel: PACKED_ROWS rows of a block's values.
static size_t packed_group_bytes(WeightType type) { return PACKED_ROWS * (size_t)weight_types[type].panel.values_bytes; }

// Where byte i of row r's values in group g is in a panel.
static size_t packed_at(WeightType type, int r, int g, int i) {
    return g * packed_group_bytes(type) + (size_t)(i / 4) * 64 + 4 * r + i % 4;
}

// Moves one block between the file's layout and a panel's (to_panel, or
// back), as row r and group g of a panel of `groups` groups.
static void move_block(WeightType type, uint8_t *panel, uint8_t *block, int groups, int r, int g, int to_panel) {
    const PanelLayout *layout = &weight_types[type].panel;
    int values_at = layout->values_at, values_bytes = layout->values_bytes, header = (int)block_bytes(type) - values_bytes;
    uint32_t flip = layout->plus_128 ? 0x80808080u : 0;
    for (int i = 0; i < values_bytes; i += 4) {
        uint8_t *at = panel + packed_at(type, r, g, i), *in_block = block + values_at + i;
        uint32_t four;
        memcpy(&four, to_panel ? in_block : at, 4);
        four ^= flip;
        memcpy(to_panel ? at : in_block, &four, 4);
    }
    uint8_t *words = panel + groups * packed_group_bytes(type) + (size_t)g * PACKED_ROWS * header;
    for (int w = 0, o = 0; o < header; o += layout->words[w++]) { // word w: the 16 rows' in turn
        uint8_t *at = words + o * PACKED_ROWS + r * layout->words[w], *in_block = block + (o < values_at ? o : o + values_bytes);
        memmove(to_panel ? at : in_block, to_panel ? in_block : at, layout->words[w]);
    }
}

// A panel from PACKED_ROWS rows in the file's layout (row_bytes apart, with
// `groups` blocks each), and back: row r's block g as the file has it.
static void pack_panel(WeightType type, uint8_t *panel, const uint8_t *rows, size_t row_bytes, int groups) {
    for (int g = 0; g < groups; g++) // in the panel's order, a group at a time: start-up packs gigabytes
        for (int r = 0; r < PACKED_ROWS; r++)
            move_block(type, panel, (uint8_t *)(uintptr_t)(rows + r * row_bytes + g * block_bytes(type)), groups, r, g, 1);
}

static void packed_block(WeightType type, uint8_t *block, const uint8_t *panel, int groups, int r, int g) {
    move_block(type, (uint8_t *)(uintptr_t)panel, block, groups, r, g, 0);
}

// The plain kernel on whole panels (BlockRows; rows a multiple of
// PACKED_ROWS): each block as the file has it, through blocks_rows_scalar's sums.
static void packed_rows_scalar(WeightType type, float *out, size_t out_stride, const uint8_t *panels,
                               size_t row_bytes, const Input *in, int rows) {
    uint8_t block[256]; // a block in the file's layout
    int groups = in->n / weight_types[type].values;
    for (int r = 0; r < rows; r++) {
        const uint8_t *panel = panels + (size_t)(r / PACKED_ROWS) * PACKED_ROWS * row_bytes;
        for (int t = 0; t < in->tokens; t++) out[t * out_stride + r] = 0.0f;
        for (int g = 0; g < groups; g++) {
            packed_block(type, block, panel, groups, r % PACKED_ROWS, g);
            add_block_products(type, out + r, out_stride, block, g, in);
        }
    }
}

// Lays out a matrix's rows in panels, in place, if the kernels in use have a
// panel kernel for its type.
static void repack_matrix(Matrix *m) {
    if (!has_packed_layout(m->type) || !kernels.packed_rows[m->type] || m->packed_rows) return;
    int groups = m->cols / weight_types[m->type].values, panels = m->rows / PACKED_ROWS;
    size_t panel_bytes = PACKED_ROWS * m->row_bytes;
    uint8_t *data = (uint8_t *)(uintptr_t)m->data; // our own copy (-l read), so ours to rewrite
#pragma omp parallel
    {
        uint8_t *rows = xmalloc(panel_bytes, "a panel of weights");
        int p;
#pragma omp for schedule(static)
        for (p = 0; p < panels; p++) {
            memcpy(rows, data + p * panel_bytes, panel_bytes);
            pack_panel(m->type, data + p * panel_bytes, rows, m->row_bytes, groups);
        }
        free(rows);
    }
    m->packed_rows = panels * PACKED_ROWS;
}

// Loading moves the file through memory in pieces of PIECE_BYTES, as many at
// once as there are threads: small enough for one read call each (Linux
// reads at most about 2 GB a call, Windows counts in 32 bits) and for the
// threads to finish together (a 1.1B model's file is 18 pieces).
#define PIECE_BYTES ((size_t)64 << 20)

// Moves size bytes at p up by skew (at most 64; the memory has room past
// them), in pieces over the threads: piece i's first skew bytes are kept
// aside before any piece moves, since the piece below it writes over them.
static void shift_up(unsigned char *p, size_t size, size_t skew) {
    const size_t piece = PIECE_BYTES;
    long pieces = (long)((size + piece - 1) / piece), i;
    unsigned char(*heads)[64] = xmalloc((size_t)pieces * 64, "a move of the weights");
    for (i = 0; i < pieces; i++) {
        size_t at = (size_t)i * piece;
        memcpy(heads[i], p + at, size - at < skew ? size - at : skew);
    }
#pragma omp parallel for schedule(dynamic, 1)
    for (i = 0; i < pieces; i++) {
        size_t at = (size_t)i * piece, len = size - at < piece ? size - at : piece, head = len < skew ? len : skew;
        memmove(p + at + skew + head, p + at + head, len - head); // the rest of the piece, which no other piece writes
        memcpy(p + at + skew, heads[i], head);
    }
    free(heads);
}

// The panel kernels read 64 bytes at a time, so they want their lines on
// 64-byte boundaries, and GGUF aligns tensors to 32 bytes (by default): in
// about half the files every line would straddle two cache lines, which cost
// the prompt kernels a third of their speed (bench/NOTES.md). Read into memory
// of our own (load_file leaves 64 bytes to spare), the file moves up until the
// first layer's weights start a cache line, and is read again from there.
static void align_weights(Model *m, size_t size) {
    if (!m->blocks) return;
    size_t skew = (64 - (uintptr_t)m->weights.layers[0].wq.data % 64) % 64;
    if (skew == 0) return;
    const char *path = m->path;
    unsigned char *map = m->map;
    size_t map_size = m->map_size;
    free_gguf_vocabulary(m->vocab), free(m->vocab), free(m->weights.layers);
    memset(m, 0, sizeof(*m));
    m->path = path, m->load = WEIGHTS_READ, m->map = map, m->map_size = map_size;
    shift_up(map, size, skew);
    read_checkpoint(m, map + skew, size, path);
}

// Every matrix of the model that the kernels have panels for (-l read only).
// The token embedding is looked up a row at a time, so it stays as stored,
// unless it is the classifier too.
static void repack_weights(Weights *w, const Config *c) {
    for (int l = 0; l < c->n_layers; l++) {
        Layer *layer = &w->layers[l];
        Matrix *each[] = {&layer->wq, &layer->wk, &layer->wv, &layer->wo, &layer->w1, &layer->w2, &layer->w3};
        for (size_t i = 0; i < sizeof(each) / sizeof(each[0]); i++) repack_matrix(each[i]);
    }
    repack_matrix(&w->classifier);
    if (w->token_embedding.data == w->classifier.data) w->token_embedding.packed_rows = w->classifier.packed_rows;
}

// One row of a matrix of any type but float32 as floats (matrix_row).
static void decode_row(float *out, const Matrix *m, int row) {
    size_t n = m->cols;
    Block block;
    const unsigned char *p = (const unsigned char *)m->data + (size_t)row * m->row_bytes;
    for (size_t j = 0; j < n; j++) {
        switch (m->type) {
        case WEIGHT_F32: out[j] = ((const float *)p)[j]; break; // matrix_row copies these itself
        case WEIGHT_Q8: out[j] = (int8_t)p[j] * m->scale[((size_t)row * n + j) / m->group_size]; break;
        case WEIGHT_F16: out[j] = f16_to_f32(load_u16(p + 2 * j)); break;
        case WEIGHT_BF16: out[j] = bf16_to_f32(load_u16(p + 2 * j)); break;
        default: { // a block type: decoded a block at a time
            int values = weight_types[m->type].values, k = (int)(j % values);
            if (k == 0 && row < m->packed_rows) { // rebuilt from its panel (see repack_weights)
                uint8_t stored[256];
                const uint8_t *panel = (const uint8_t *)m->data + (size_t)(row / PACKED_ROWS) * PACKED_ROWS * m->row_bytes;
                packed_block(m->type, stored, panel, (int)(n / values), row % PACKED_ROWS, (int)(j / values));
                decode_block(m->type, stored, &block);
            } else if (k == 0) {
                decode_block(m->type, p + j / values * block_bytes(m->type), &block);
            }
            out[j] = block.scale[k / 16] * block.q[k] + block.offset[k / 16];
        }
        }
    }
}

// matmul_block's rows r0..r0+rows-1 of a matrix of any type but float32:
// each kind through its kernel in the set in use.
static void other_rows(float *out, const Input *in, const Matrix *w, int r0, int rows) {
    int n = w->cols, d = w->rows;
    const unsigned char *rows_data = (const unsigned char *)w->data + (size_t)r0 * w->row_bytes;
    switch (w->type) {
    case WEIGHT_Q8:
        kernels.q8_rows(out + r0, d, (const int8_t *)rows_data, w->scale + (size_t)r0 * (n / w->group_size), n, in->q,
                        in->scale, in->sum, n, n, w->group_size, rows, in->tokens);
        break;
    case WEIGHT_F16:
        kernels.f16_rows(out + r0, d, (const uint16_t *)rows_data, n, in->f, n, n, rows, in->tokens);
        break;
    case WEIGHT_BF16:
        kernels.bf16_rows(out + r0, d, (const uint16_t *)rows_data, n, in->f, n, n, rows, in->tokens);
        break;
    default: { // a GGUF block type: the set's kernel for it, or the plain one
        BlockRows *block_rows = kernels.block_rows[w->type] ? kernels.block_rows[w->type] : blocks_rows_scalar;
        if (r0 < w->packed_rows) { // whole panels; the rows after the last one as stored
            int in_panels = w->packed_rows - r0 < rows ? w->packed_rows - r0 : rows;
            BlockRows *packed = kernels.packed_rows[w->type] ? kernels.packed_rows[w->type] : packed_rows_scalar;
            packed(w->type, out + r0, d, rows_data, w->row_bytes, in, in_panels);
            r0 += in_panels, rows -= in_panels, rows_data += in_panels * w->row_bytes;
        }
        if (rows > 0) block_rows(w->type, out + r0, d, rows_data, w->row_bytes, in, rows);
        break;
    }
    }
}

// Every block type's plain kernel, for a set's table.
#define PLAIN_BLOCK_KERNELS                                                                                           \
    {[WEIGHT_Q8_0] = blocks_rows_scalar, [WEIGHT_Q4_0] = blocks_rows_scalar, [WEIGHT_Q4_1] = blocks_rows_scalar,       \
     [WEIGHT_Q5_0] = blocks_rows_scalar, [WEIGHT_Q5_1] = blocks_rows_scalar, [WEIGHT_IQ4_NL] = blocks_rows_scalar,     \
     [WEIGHT_Q2_K] = blocks_rows_scalar, [WEIGHT_Q3_K] = blocks_rows_scalar, [WEIGHT_Q4_K] = blocks_rows_scalar,       \
     [WEIGHT_Q5_K] = blocks_rows_scalar, [WEIGHT_Q6_K] = blocks_rows_scalar, [WEIGHT_IQ4_XS] = blocks_rows_scalar}
#define PLAIN_KERNELS                                                                                                  \
    .name = "scalar", .supported = always, .f32_rows = f32_rows_scalar, .weighted_rows = weighted_rows_scalar,         \
    .rmsnorm = rmsnorm, .softmax = softmax, .swiglu = swiglu, .q8_rows = q8_rows_scalar, .f16_rows = f16_rows_scalar,  \
    .bf16_rows = bf16_rows_scalar, .block_rows = PLAIN_BLOCK_KERNELS, .weighted_f16_rows = weighted_f16_rows_scalar,   \
    .to_f16 = to_f16_scalar, .quantize = quantize

// The kernels in use (declared under "The plain kernels"): the plain ones
// until select_kernels() picks the best set this CPU runs.
static KernelSet kernels = {PLAIN_KERNELS};


// ============================================================================
// Other formats: GGUF
//
// Loading GGUF
//
// GGUF is llama.cpp's format (versions 2 and 3, little-endian):
//   "GGUF", uint32 version, uint64 tensor count, uint64 key/value count;
//   the key/values: a string key, a uint32 value type, the value;
//   the tensor infos: a string name, uint32 dimensions, uint64 extent of each
//   (the first is the row length), uint32 storage type, uint64 offset;
//   then, at the next multiple of general.alignment (32 if absent), the data.
// A string is a uint64 length and that many bytes. Every read below is checked
// against the end of the file; every tensor's extent against its data.

// Bounds far above any Llama 2 (70B: dim 8192, hidden 28672, 80 layers, 64
// heads, 4096 positions) that keep every size below 2^63 in the math below.
// source: where the sizes came from, for the messages ("header" for llama2.c's files).
static void check_config(const Config *c, const char *path, const char *source) {
    int llama2c = strcmp(source, "header") == 0;
    struct { const char *name; int value, max; } field[] = {
        {"dim", c->dim, 1 << 16},          {"hidden_dim", c->hidden_dim, 1 << 18},
        {"n_layers", c->n_layers, 1 << 10}, {"n_heads", c->n_heads, 1 << 10},
        {"n_kv_heads", c->n_kv_heads, 1 << 10}, {"vocab_size", c->vocab_size, 1 << 22},
        {"seq_len", c->seq_len, 1 << 22},
    };
    for (size_t i = 0; i < sizeof(field) / sizeof(field[0]); i++)
        if (field[i].value <= 0 || field[i].value > field[i].max)
            fatal("%s: %s has %s = %d, expected 1..%d%s", path, source, field[i].name, field[i].value, field[i].max,
                  llama2c ? " (is this a llama2.c checkpoint?)" : "");
    if (c->dim % c->n_heads != 0)
        fatal("%s: %s has dim %d, not a multiple of n_heads %d", path, source, c->dim, c->n_heads);
    if (c->n_heads % c->n_kv_heads != 0)
        fatal("%s: %s has n_heads %d, not a multiple of n_kv_heads %d", path, source, c->n_heads, c->n_kv_heads);
    if ((c->dim / c->n_heads) % 2 != 0)
        fatal("%s: %s gives head size %d; RoPE rotates pairs, so it must be even", path, source, c->dim / c->n_heads);
}


enum { GGUF_U8, GGUF_I8, GGUF_U16, GGUF_I16, GGUF_U32, GGUF_I32, GGUF_F32, GGUF_BOOL, GGUF_STRING, GGUF_ARRAY,
       GGUF_U64, GGUF_I64, GGUF_F64, GGUF_TYPES };

// The WeightType of a ggml type id, or WEIGHT_TYPES for one this program does not run.
static WeightType weight_type(uint32_t ggml_type) {
    for (int type = 0; type < WEIGHT_TYPES; type++)
        if (weight_types[type].ggml_id >= 0 && (uint32_t)weight_types[type].ggml_id == ggml_type) return (WeightType)type;
    return WEIGHT_TYPES;
}

// The GGUF types this program runs, as a list for messages, from weight_types.
static const char *gguf_types_supported(void) {
    static char list[256];
    size_t used = 0;
    for (int type = 0; type < WEIGHT_TYPES && used < sizeof(list); type++)
        if (weight_types[type].ggml_id >= 0)
            used += snprintf(list + used, sizeof(list) - used, "%s%s", used ? ", " : "", weight_types[type].name);
    return list;
}

// ggml's names for its storage types, to name the ones this program does not run.
static const char *ggml_type_name(uint32_t type) {
    static const char *names[] = {"F32",  "F16",   "Q4_0",   "Q4_1",  "Q4_2", "Q4_3",  "Q5_0",  "Q5_1",
                                  "Q8_0", "Q8_1",  "Q2_K",   "Q3_K",  "Q4_K", "Q5_K",  "Q6_K",  "Q8_K",
                                  "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS",
                                  "I8",   "I16",   "I32",    "I64",   "F64",  "IQ1_M", "BF16"};
    return type < sizeof(names) / sizeof(names[0]) ? names[type] : "unknown";
}

typedef struct {
    const unsigned char *base, *p, *end;
    const char *path;
} GGUFReader;

static const unsigned char *gguf_take(GGUFReader *r, uint64_t n, const char *what) {
    if (n > (uint64_t)(r->end - r->p))
        fatal("%s: GGUF file cut short: %s at byte %zu needs %llu bytes, %zu are left", r->path, what,
              (size_t)(r->p - r->base), (unsigned long long)n, (size_t)(r->end - r->p));
    const unsigned char *p = r->p;
    r->p += n;
    return p;
}

static uint32_t gguf_u32(GGUFReader *r, const char *what) { return read_u32le(gguf_take(r, 4, what)); }
static uint64_t gguf_u64(GGUFReader *r, const char *what) {
    const unsigned char *p = gguf_take(r, 8, what);
    return (uint64_t)read_u32le(p) | (uint64_t)read_u32le(p + 4) << 32;
}

typedef struct {
    const char *s;
    size_t len;
} GGUFString;

static GGUFString gguf_string(GGUFReader *r, const char *what) {
    uint64_t len = gguf_u64(r, what);
    GGUFString s = {(const char *)gguf_take(r, len, what), (size_t)len};
    return s;
}

static int string_is(GGUFString s, const char *text) { return s.len == strlen(text) && memcmp(s.s, text, s.len) == 0; }

// qsort's order on GGUFStrings: bytes, then length.
static int compare_strings(const void *pa, const void *pb) {
    const GGUFString *a = pa, *b = pb;
    int c = memcmp(a->s, b->s, a->len < b->len ? a->len : b->len);
    return c ? c : (a->len > b->len) - (a->len < b->len);
}

// A metadata integer that was not in the file.
#define ABSENT INT64_MIN

// Bytes of one value of a fixed-size type; 0 for strings and arrays.
static int gguf_scalar_bytes(uint32_t type) {
    static const int bytes[GGUF_TYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return type < GGUF_TYPES ? bytes[type] : 0;
}

static void gguf_skip(GGUFReader *r, uint32_t type, int depth) {
    if (type >= GGUF_TYPES) fatal("%s: GGUF value of unknown type %u", r->path, type);
    if (type == GGUF_STRING) {
        gguf_string(r, "a string value");
    } else if (type == GGUF_ARRAY) {
        uint32_t elem = gguf_u32(r, "an array's type");
        uint64_t count = gguf_u64(r, "an array's length");
        if (depth > 4) fatal("%s: GGUF arrays nested too deep", r->path);
        if (gguf_scalar_bytes(elem)) {
            if (count > (uint64_t)(r->end - r->p) / gguf_scalar_bytes(elem))
                fatal("%s: GGUF array of %llu values runs past the end of the file", r->path, (unsigned long long)count);
            gguf_take(r, count * gguf_scalar_bytes(elem), "an array");
        } else {
            for (uint64_t i = 0; i < count; i++) gguf_skip(r, elem, depth + 1);
        }
    } else {
        gguf_take(r, gguf_scalar_bytes(type), "a value");
    }
}

// A metadata value that must be a whole number, of whichever integer type.
static int64_t gguf_int(GGUFReader *r, uint32_t type, GGUFString key) {
    const unsigned char *p;
    switch (type) {
    case GGUF_U8: return *gguf_take(r, 1, "a value");
    case GGUF_I8: return (int8_t)*gguf_take(r, 1, "a value");
    case GGUF_U16: p = gguf_take(r, 2, "a value"); return p[0] | p[1] << 8;
    case GGUF_I16: p = gguf_take(r, 2, "a value"); return (int16_t)(p[0] | p[1] << 8);
    case GGUF_U32: return gguf_u32(r, "a value");
    case GGUF_I32: return (int32_t)gguf_u32(r, "a value");
    case GGUF_U64: {
        uint64_t v = gguf_u64(r, "a value");
        if (v > INT64_MAX) fatal("%s: GGUF key %.*s is %llu, out of range", r->path, (int)key.len, key.s, (unsigned long long)v);
        return (int64_t)v;
    }
    case GGUF_I64: return (int64_t)gguf_u64(r, "a value");
    }
    fatal("%s: GGUF key %.*s has value type %u, expected an integer", r->path, (int)key.len, key.s, type);
    return 0;
}

static int gguf_bool(GGUFReader *r, uint32_t type, GGUFString key) {
    if (type != GGUF_BOOL) fatal("%s: GGUF key %.*s has value type %u, expected a bool", r->path, (int)key.len, key.s, type);
    unsigned char b = *gguf_take(r, 1, "a value");
    if (b > 1) fatal("%s: GGUF key %.*s holds %u, expected a bool (0 or 1)", r->path, (int)key.len, key.s, b);
    return b;
}

static float gguf_float(GGUFReader *r, uint32_t type, GGUFString key) {
    if (type == GGUF_F32) {
        uint32_t bits = gguf_u32(r, "a value");
        float f;
        memcpy(&f, &bits, 4);
        return f;
    }
    if (type == GGUF_F64) {
        uint64_t bits = gguf_u64(r, "a value");
        double d;
        memcpy(&d, &bits, 8);
        return (float)d;
    }
    fatal("%s: GGUF key %.*s has value type %u, expected a float", r->path, (int)key.len, key.s, type);
    return 0.0f;
}

// The start of an array of `want` elements, with its length in *count.
static const unsigned char *gguf_array(GGUFReader *r, uint32_t type, GGUFString key, uint32_t want, uint64_t *count) {
    if (type != GGUF_ARRAY) fatal("%s: GGUF key %.*s is not an array", r->path, (int)key.len, key.s);
    uint32_t elem = gguf_u32(r, "an array's type");
    if (elem != want) fatal("%s: GGUF key %.*s holds values of type %u, expected %u", r->path, (int)key.len, key.s, elem, want);
    const unsigned char *start = r->p;
    r->p -= 4;
    gguf_skip(r, GGUF_ARRAY, 0); // checks that it all lies inside the file
    *count = read_u32le(start) | (uint64_t)read_u32le(start + 4) << 32;
    return start + 8;
}

typedef struct {
    GGUFString name;
    uint32_t n_dims, type;
    uint64_t dims[4];
    uint64_t offset;
} GGUFTensor;

// The tensor table and the data it points into.
typedef struct {
    GGUFTensor *tensor;        // (n)
    uint64_t n;
    const unsigned char *data; // the tensor data: every offset counts from here
    uint64_t data_size;
    uint64_t alignment;
    const char *path;
} GGUFTensors;

// The tokenizer of a GGUF file's vocabulary, with its normalizer flags.
static void tokenizer_from_gguf(Tokenizer *t, const GGUFVocab *v, const char *path) {
    build_tokenizer_from_vocab(t, v, path);
}

static const GGUFTensor *find_tensor(const GGUFTensors *tt, const char *name) {
    for (uint64_t i = 0; i < tt->n; i++)
        if (string_is(tt->tensor[i].name, name)) return &tt->tensor[i];
    return NULL;
}

// Bytes one row of a tensor takes in its storage type; 0 if the type is not one we run.
static size_t gguf_row_bytes(uint32_t ggml_type, uint64_t cols) {
    WeightType type = weight_type(ggml_type);
    if (type == WEIGHT_F32) return cols * 4;
    if (type == WEIGHT_F16 || type == WEIGHT_BF16) return cols * 2;
    if (type == WEIGHT_TYPES || cols % weight_types[type].values != 0) return 0;
    return cols / weight_types[type].values * weight_types[type].bytes;
}

// The tensor `name`, which must exist with exactly this shape (cols is the
// row length; rows 1 means a vector) and lie inside the file.
static const GGUFTensor *gguf_tensor(const GGUFTensors *tt, const char *name, int rows, int cols) {
    const GGUFTensor *t = find_tensor(tt, name);
    const char *path = tt->path;
    if (!t) fatal("%s: GGUF file has no tensor %s", path, name);
    // Offsets are multiples of the alignment (the format says so), which keeps every float aligned.
    if (t->offset % tt->alignment != 0)
        fatal("%s: tensor %s at offset %llu, not a multiple of the file's alignment %llu", path, name,
              (unsigned long long)t->offset, (unsigned long long)tt->alignment);
    int vector = rows == 1;
    if (t->n_dims != (vector ? 1u : 2u))
        fatal("%s: tensor %s has %u dimensions, expected %d", path, name, t->n_dims, vector ? 1 : 2);
    if (t->dims[0] != (uint64_t)cols || (!vector && t->dims[1] != (uint64_t)rows))
        fatal("%s: tensor %s has shape [%llu, %llu], expected [%d, %d] from the metadata", path, name,
              (unsigned long long)t->dims[0], (unsigned long long)(t->n_dims > 1 ? t->dims[1] : 1), cols, rows);
    size_t row_bytes = gguf_row_bytes(t->type, cols);
    if (row_bytes == 0 && weight_type(t->type) != WEIGHT_TYPES)
        fatal("%s: tensor %s has type %s, whose blocks of %d do not divide its rows of %d", path, name,
              ggml_type_name(t->type), weight_types[weight_type(t->type)].values, cols);
    if (row_bytes == 0)
        fatal("%s: tensor %s has type %s, supported: %s", path, name, ggml_type_name(t->type), gguf_types_supported());
    if (t->offset > tt->data_size || (uint64_t)rows * row_bytes > tt->data_size - t->offset)
        fatal("%s: tensor %s (%llu bytes at offset %llu) runs past the end of the file", path, name,
              (unsigned long long)((uint64_t)rows * row_bytes), (unsigned long long)t->offset);
    return t;
}

static Matrix gguf_matrix(const GGUFTensors *tt, const char *name, int rows, int cols) {
    const GGUFTensor *t = gguf_tensor(tt, name, rows, cols);
    Matrix m = {weight_type(t->type), rows, cols, tt->data + t->offset, NULL, 0, gguf_row_bytes(t->type, cols), 0};
    if (is_block_type(m.type)) m.group_size = QBLOCK;
    return m;
}

static const float *gguf_vector(const GGUFTensors *tt, const char *name, int len) {
    const GGUFTensor *t = gguf_tensor(tt, name, 1, len);
    if (weight_type(t->type) != WEIGHT_F32)
        fatal("%s: tensor %s has type %s, expected F32 for a vector", tt->path, name, ggml_type_name(t->type));
    return (const float *)(tt->data + t->offset);
}

// What the key/value section says, for this program.
typedef struct {
    GGUFString architecture, tokenizer_model;
    int64_t dim, hidden, layers, heads, kv_heads, context, rope_dims; // 0 (kv_heads, rope_dims: ABSENT): absent
    int64_t key_length, value_length;    // a head's width, where the file gives it (ABSENT: dim / heads)
    uint64_t alignment;
    float rope_theta, norm_eps;
    GGUFString rope_scaling_type;        // "linear", "none", ...; absent: linear, as llama.cpp reads it
    float rope_scaling_factor;           // 0: absent
    GGUFString tokenizer_pre;            // byte-level BPE: how text is cut into words ("llama-bpe", ...)
    const unsigned char *tokens, *scores, *types, *merges; // the vocabulary's arrays, where present
    uint64_t n_tokens, n_scores, n_types, n_merges;
    int64_t bos_id, eos_id, unk_id, eot_id, eom_id; // ABSENT when absent
    int add_space_prefix, remove_extra_whitespaces, add_bos; // llama.cpp's defaults when absent: 1, 0, 1
    GGUFString chat_template;
} GGUFMetadata;

// Reads the n_kv keys and values; keys this program does not use are skipped.
static GGUFMetadata read_gguf_metadata(GGUFReader *r, uint64_t n_kv) {
    GGUFMetadata md = {{NULL, 0}, {NULL, 0}, 0, 0, 0, 0, ABSENT, 0, ABSENT, ABSENT, ABSENT, 32, 10000.0f, 1e-5f, {NULL, 0}, 0.0f,
                       {NULL, 0}, NULL, NULL, NULL, NULL, 0, 0, 0, 0, ABSENT, ABSENT, ABSENT, ABSENT, ABSENT, 1, 0, 1,
                       {NULL, 0}};
    GGUFString *keys = xmalloc((n_kv ? n_kv : 1) * sizeof(GGUFString), "the metadata keys");
    for (uint64_t i = 0; i < n_kv; i++) {
        GGUFString key = gguf_string(r, "a metadata key");
        keys[i] = key;
        uint32_t type = gguf_u32(r, "a value type");
        if (string_is(key, "general.architecture") && type == GGUF_STRING) md.architecture = gguf_string(r, "a value");
        else if (string_is(key, "general.alignment")) md.alignment = (uint64_t)gguf_int(r, type, key);
        else if (string_is(key, "llama.embedding_length")) md.dim = gguf_int(r, type, key);
        else if (string_is(key, "llama.feed_forward_length")) md.hidden = gguf_int(r, type, key);
        else if (string_is(key, "llama.block_count")) md.layers = gguf_int(r, type, key);
        else if (string_is(key, "llama.attention.head_count")) md.heads = gguf_int(r, type, key);
        else if (string_is(key, "llama.attention.head_count_kv")) md.kv_heads = gguf_int(r, type, key);
        else if (string_is(key, "llama.context_length")) md.context = gguf_int(r, type, key);
        else if (string_is(key, "llama.rope.dimension_count")) md.rope_dims = gguf_int(r, type, key);
        else if (string_is(key, "llama.attention.key_length")) md.key_length = gguf_int(r, type, key);
        else if (string_is(key, "llama.attention.value_length")) md.value_length = gguf_int(r, type, key);
        else if (string_is(key, "llama.rope.freq_base")) md.rope_theta = gguf_float(r, type, key);
        else if (string_is(key, "llama.rope.scaling.type") && type == GGUF_STRING) md.rope_scaling_type = gguf_string(r, "a value");
        else if (string_is(key, "llama.rope.scaling.factor") || string_is(key, "llama.rope.scale_linear"))
            md.rope_scaling_factor = gguf_float(r, type, key);
        else if (string_is(key, "llama.attention.layer_norm_rms_epsilon")) md.norm_eps = gguf_float(r, type, key);
        else if (string_is(key, "tokenizer.ggml.model") && type == GGUF_STRING) md.tokenizer_model = gguf_string(r, "a value");
        else if (string_is(key, "tokenizer.ggml.pre") && type == GGUF_STRING) md.tokenizer_pre = gguf_string(r, "a value");
        else if (string_is(key, "tokenizer.ggml.merges")) md.merges = gguf_array(r, type, key, GGUF_STRING, &md.n_merges);
        else if (string_is(key, "tokenizer.ggml.tokens")) md.tokens = gguf_array(r, type, key, GGUF_STRING, &md.n_tokens);
        else if (string_is(key, "tokenizer.ggml.scores")) md.scores = gguf_array(r, type, key, GGUF_F32, &md.n_scores);
        else if (string_is(key, "tokenizer.ggml.token_type")) md.types = gguf_array(r, type, key, GGUF_I32, &md.n_types);
        else if (string_is(key, "tokenizer.ggml.bos_token_id")) md.bos_id = gguf_int(r, type, key);
        else if (string_is(key, "tokenizer.ggml.eos_token_id")) md.eos_id = gguf_int(r, type, key);
        else if (string_is(key, "tokenizer.ggml.unknown_token_id")) md.unk_id = gguf_int(r, type, key);
        else if (string_is(key, "tokenizer.ggml.eot_token_id")) md.eot_id = gguf_int(r, type, key);
        else if (string_is(key, "tokenizer.ggml.eom_token_id")) md.eom_id = gguf_int(r, type, key);
        else if (string_is(key, "tokenizer.ggml.add_space_prefix")) md.add_space_prefix = gguf_bool(r, type, key);
        else if (string_is(key, "tokenizer.ggml.remove_extra_whitespaces")) md.remove_extra_whitespaces = gguf_bool(r, type, key);
        else if (string_is(key, "tokenizer.ggml.add_bos_token")) md.add_bos = gguf_bool(r, type, key);
        else if (string_is(key, "tokenizer.chat_template") && type == GGUF_STRING) md.chat_template = gguf_string(r, "a value");
        else gguf_skip(r, type, 0);
    }
    // A key given twice is a file that contradicts itself: refused, as llama.cpp does.
    qsort(keys, n_kv, sizeof(GGUFString), compare_strings);
    for (uint64_t i = 1; i < n_kv; i++)
        if (compare_strings(&keys[i - 1], &keys[i]) == 0)
            fatal("%s: GGUF key %.*s appears twice; expected each key once", r->path, (int)keys[i].len, keys[i].s);
    free(keys);
    return md;
}

// The model's sizes, from the metadata and the embedding's row count, checked.
static void gguf_config(Config *c, const GGUFMetadata *md, const GGUFTensors *tt) {
    const char *path = tt->path;
    if (!string_is(md->architecture, "llama"))
        fatal("%s: GGUF architecture '%.*s'; this program runs 'llama' models", path, (int)md->architecture.len,
              md->architecture.s ? md->architecture.s : "");
    struct { const char *key; int64_t value, max; } need[] = {
        {"llama.embedding_length", md->dim, 1 << 16},  {"llama.feed_forward_length", md->hidden, 1 << 18},
        {"llama.block_count", md->layers, 1 << 10},     {"llama.attention.head_count", md->heads, 1 << 10},
        {"llama.context_length", md->context, 1 << 22},
    };
    for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++)
        if (need[i].value <= 0 || need[i].value > need[i].max)
            fatal("%s: GGUF key %s is %s%lld, expected 1..%lld", path, need[i].key, need[i].value ? "" : "missing or ",
                  (long long)need[i].value, (long long)need[i].max);
    const GGUFTensor *embedding = find_tensor(tt, "token_embd.weight");
    if (!embedding || embedding->n_dims != 2) fatal("%s: GGUF file has no 2-D tensor token_embd.weight", path);
    c->dim = (int)md->dim, c->hidden_dim = (int)md->hidden, c->n_layers = (int)md->layers;
    c->n_heads = (int)md->heads;
    // Absent: no grouped-query attention. Present, it is range-checked whole before it is narrowed.
    if (md->kv_heads != ABSENT && (md->kv_heads <= 0 || md->kv_heads > md->heads))
        fatal("%s: GGUF key llama.attention.head_count_kv is %lld, expected 1..%lld (llama.attention.head_count)", path,
              (long long)md->kv_heads, (long long)md->heads);
    c->n_kv_heads = md->kv_heads != ABSENT ? (int)md->kv_heads : (int)md->heads;
    if (embedding->dims[1] < 1 || embedding->dims[1] > (1 << 22))
        fatal("%s: tensor token_embd.weight has %llu rows (the vocabulary), expected 1..%d", path,
              (unsigned long long)embedding->dims[1], 1 << 22);
    c->vocab_size = (int)embedding->dims[1];
    c->seq_len = (int)md->context;
    check_config(c, path, "the GGUF metadata");
    c->head_size = c->dim / c->n_heads;
    c->kv_dim = c->n_kv_heads * c->head_size;
    c->rope_theta = md->rope_theta;
    c->norm_eps = md->norm_eps;
    if ((md->key_length != ABSENT && md->key_length != c->head_size) ||
        (md->value_length != ABSENT && md->value_length != c->head_size))
        fatal("%s: llama.attention.key_length/value_length are %lld/%lld, but this program runs heads of "
              "embedding_length / head_count = %d", path, (long long)md->key_length, (long long)md->value_length,
              c->head_size);
    if (md->rope_dims != ABSENT && md->rope_dims != c->head_size)
        fatal("%s: llama.rope.dimension_count is %lld but heads are %d wide; partial rotation is not supported", path,
              (long long)md->rope_dims, c->head_size);
    if (!(c->rope_theta > 0.0f) || !(c->norm_eps > 0.0f) || !isfinite(c->rope_theta) || !isfinite(c->norm_eps))
        fatal("%s: llama.rope.freq_base %g or layer_norm_rms_epsilon %g is not a positive number", path, c->rope_theta,
              c->norm_eps);
    // RoPE scaling: linear (positions divided by the factor) runs; any other kind is refused, never ignored.
    c->rope_scale = 1.0f;
    const GGUFString *kind = &md->rope_scaling_type;
    int linear = kind->s == NULL || string_is(*kind, "linear"), none = kind->s && string_is(*kind, "none");
    if (!linear && !none)
        fatal("%s: llama.rope.scaling.type is '%.*s'; this program runs linear RoPE scaling only", path, (int)kind->len,
              kind->s);
    if (md->rope_scaling_factor != 0.0f && !(none && md->rope_scaling_factor == 1.0f)) {
        if (none || !(md->rope_scaling_factor > 0.0f) || !isfinite(md->rope_scaling_factor))
            fatal("%s: llama.rope.scaling.factor is %g with scaling type '%s'; expected a positive factor with linear "
                  "scaling", path, md->rope_scaling_factor, none ? "none" : "linear");
        c->rope_scale = md->rope_scaling_factor;
    }
}

// The tensor table: n entries, each a name, its extents, type and offset.
static GGUFTensor *read_tensor_table(GGUFReader *r, uint64_t n) {
    GGUFTensor *tensors = xmalloc((n ? n : 1) * sizeof(GGUFTensor), "the tensor table");
    for (uint64_t i = 0; i < n; i++) {
        GGUFTensor *t = &tensors[i];
        t->name = gguf_string(r, "a tensor name");
        t->n_dims = gguf_u32(r, "a tensor's dimensions");
        if (t->n_dims < 1 || t->n_dims > 4)
            fatal("%s: tensor %.*s has %u dimensions, expected 1 to 4", r->path, (int)t->name.len, t->name.s, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) t->dims[d] = gguf_u64(r, "a tensor's extent");
        t->type = gguf_u32(r, "a tensor's type");
        t->offset = gguf_u64(r, "a tensor's offset");
    }
    // Two tensors of one name: which one is the weight? Refused, as llama.cpp does.
    GGUFString *names = xmalloc((n ? n : 1) * sizeof(GGUFString), "the tensor names");
    for (uint64_t i = 0; i < n; i++) names[i] = tensors[i].name;
    qsort(names, n, sizeof(GGUFString), compare_strings);
    for (uint64_t i = 1; i < n; i++)
        if (compare_strings(&names[i - 1], &names[i]) == 0)
            fatal("%s: GGUF tensor %.*s appears twice; expected each name once", r->path, (int)names[i].len, names[i].s);
    free(names);
    return tensors;
}

// Each tensor's bytes (from its type and shape) must be its own: two tensors
// over the same bytes (an edited table, or a type changed to a larger one)
// would compute garbage without a word. A tensor of a type this program does
// not run has no known size; gguf_tensor refuses it if it is used.
typedef struct {
    uint64_t start, end; // [start, end) in the tensor data
    uint64_t index;      // in the tensor table
} TensorSpan;

// By where they start, then by their place in the table: the same order from every qsort.
static int span_order(const void *a, const void *b) {
    const TensorSpan *x = a, *y = b;
    if (x->start != y->start) return (x->start > y->start) - (x->start < y->start);
    return (x->index > y->index) - (x->index < y->index);
}

static void check_tensors_apart(const GGUFTensors *tt) {
    TensorSpan *spans = xmalloc((tt->n ? tt->n : 1) * sizeof(TensorSpan), "the tensor table");
    uint64_t n = 0;
    for (uint64_t i = 0; i < tt->n; i++) {
        const GGUFTensor *t = &tt->tensor[i];
        if (t->dims[0] > tt->data_size) continue; // no such row fits in the file: gguf_tensor says so if it is used
        uint64_t bytes = gguf_row_bytes(t->type, t->dims[0]);
        for (uint32_t d = 1; d < t->n_dims && bytes > 0; d++)
            bytes = t->dims[d] > UINT64_MAX / bytes ? UINT64_MAX : bytes * t->dims[d];
        if (bytes == 0) continue; // empty, or of a type we do not run
        spans[n++] = (TensorSpan){t->offset, t->offset > UINT64_MAX - bytes ? UINT64_MAX : t->offset + bytes, i};
    }
    qsort(spans, n, sizeof(TensorSpan), span_order);
    for (uint64_t i = 1, furthest = 0; i < n; i++) { // furthest: of those before i, the one that ends last
        if (spans[i].start < spans[furthest].end) {
            TensorSpan first = spans[furthest], second = spans[i];
            free(spans); // before fatal, which does not return
            const GGUFTensor *a = &tt->tensor[first.index], *b = &tt->tensor[second.index];
            fatal("%s: tensors %.*s (bytes %llu to %llu of the tensor data) and %.*s (from byte %llu) overlap; "
                  "expected each tensor in bytes of its own", tt->path, (int)a->name.len, a->name.s,
                  (unsigned long long)first.start, (unsigned long long)first.end, (int)b->name.len, b->name.s,
                  (unsigned long long)second.start);
        }
        if (spans[i].end > spans[furthest].end) furthest = i;
    }
    free(spans);
}

// Points every weight at its tensor, by llama.cpp's names for them.
static void point_weights_at_tensors(Weights *w, Config *c, const GGUFTensors *tt) {
    w->layers = xmalloc(c->n_layers * sizeof(Layer), "the layer table");
    w->token_embedding = gguf_matrix(tt, "token_embd.weight", c->vocab_size, c->dim);
    for (int l = 0; l < c->n_layers; l++) {
        Layer *L = &w->layers[l];
        char name[64];
#define LAYER(FIELD) (snprintf(name, sizeof(name), "blk.%d.%s.weight", l, FIELD), name)
        L->rms_att = gguf_vector(tt, LAYER("attn_norm"), c->dim);
        L->wq = gguf_matrix(tt, LAYER("attn_q"), c->dim, c->dim);
        L->wk = gguf_matrix(tt, LAYER("attn_k"), c->kv_dim, c->dim);
        L->wv = gguf_matrix(tt, LAYER("attn_v"), c->kv_dim, c->dim);
        L->wo = gguf_matrix(tt, LAYER("attn_output"), c->dim, c->dim);
        L->rms_ffn = gguf_vector(tt, LAYER("ffn_norm"), c->dim);
        L->w1 = gguf_matrix(tt, LAYER("ffn_gate"), c->hidden_dim, c->dim);
        L->w2 = gguf_matrix(tt, LAYER("ffn_down"), c->dim, c->hidden_dim);
        L->w3 = gguf_matrix(tt, LAYER("ffn_up"), c->hidden_dim, c->dim);
#undef LAYER
    }
    w->rms_final = gguf_vector(tt, "output_norm.weight", c->dim);
    // Llama 3.1 and 3.2 scale RoPE with a factor per pair of each head (absent: none).
    w->rope_freqs = find_tensor(tt, "rope_freqs.weight") ? gguf_vector(tt, "rope_freqs.weight", c->head_size / 2) : NULL;
    for (int i = 0; w->rope_freqs && i < c->head_size / 2; i++)
        if (!(w->rope_freqs[i] > 0.0f) || !isfinite(w->rope_freqs[i]))
            fatal("%s: tensor rope_freqs.weight holds %g for pair %d, expected a positive factor", tt->path,
                  w->rope_freqs[i], i);
    c->shared_classifier = find_tensor(tt, "output.weight") == NULL; // absent: tied to the embedding
    w->classifier = c->shared_classifier ? w->token_embedding : gguf_matrix(tt, "output.weight", c->vocab_size, c->dim);
}

// Block-quantized weights take their input quantized in blocks of 32 too.
static int has_block_weights(const Weights *w, const Config *c) {
    for (int l = 0; l < c->n_layers; l++) {
        const Matrix *all[] = {&w->layers[l].wq, &w->layers[l].wk, &w->layers[l].wv, &w->layers[l].wo,
                               &w->layers[l].w1, &w->layers[l].w2, &w->layers[l].w3, &w->classifier};
        for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
            if (is_block_type(all[i]->type)) return 1;
    }
    return 0;
}

// A special token id from the metadata: dflt when absent (-1: none), else checked against the vocabulary.
static int special_id(int64_t id, int dflt, const char *what, int vocab_size, const char *path) {
    if (id == ABSENT) return dflt;
    if (id < 0 || id >= vocab_size)
        fatal("%s: GGUF key tokenizer.ggml.%s_token_id is %lld, outside the vocabulary of %d", path, what, (long long)id,
              vocab_size);
    return (int)id;
}

// Reads count strings from an array of the file into text and len (allocated here).
static void read_gguf_strings(const char ***text, size_t **len, const unsigned char *at, uint64_t count,
                              const unsigned char *bytes, size_t size, const char *path, const char *what) {
    *text = xmalloc(count * sizeof(char *), what);
    *len = xmalloc(count * sizeof(size_t), what);
    GGUFReader r = {bytes, at, bytes + size, path};
    for (uint64_t i = 0; i < count; i++) {
        GGUFString s = gguf_string(&r, what);
        (*text)[i] = s.s, (*len)[i] = s.len;
    }
}

// The vocabulary, SentencePiece's ("llama") or byte-level BPE's ("gpt2"); n
// stays 0 when the file has none, or one of another kind (run asks for -z then).
static void read_gguf_vocabulary(GGUFVocab *v, const GGUFMetadata *md, int vocab_size, const unsigned char *bytes,
                                 size_t size, const char *path) {
    if (!md->tokens) return;
    int bpe = string_is(md->tokenizer_model, "gpt2");
    if (!bpe && !string_is(md->tokenizer_model, "llama")) {
        warn("%s: its tokenizer is of type '%.*s'; this program runs SentencePiece's ('llama') and byte-level BPE's "
             "('gpt2'); give one with -z", path, (int)md->tokenizer_model.len,
             md->tokenizer_model.s ? md->tokenizer_model.s : "");
        return;
    }
    if (md->n_tokens != (uint64_t)vocab_size || (md->scores && md->n_scores != md->n_tokens) ||
        (md->types && md->n_types != md->n_tokens))
        fatal("%s: GGUF vocabulary has %llu tokens, %llu scores and %llu types for a model of %d", path,
              (unsigned long long)md->n_tokens, (unsigned long long)md->n_scores, (unsigned long long)md->n_types,
              vocab_size);
    if (bpe && md->n_merges > (1u << 24)) // a merge's rank must be exact as a float (see MergeCandidate)
        fatal("%s: GGUF vocabulary has %llu merges, expected at most %u", path, (unsigned long long)md->n_merges,
              1u << 24);
    v->n = vocab_size;
    v->bpe = bpe;
    // SentencePiece's ids are Llama 2's (<unk> 0, <s> 1, </s> 2) unless the file says; BPE's have no defaults.
    v->bos_id = special_id(md->bos_id, bpe ? -1 : 1, "bos", vocab_size, path);
    v->eos_id = special_id(md->eos_id, bpe ? -1 : 2, "eos", vocab_size, path);
    v->unk_id = special_id(md->unk_id, bpe ? -1 : 0, "unknown", vocab_size, path);
    v->eot_id = special_id(md->eot_id, -1, "eot", vocab_size, path);
    v->eom_id = special_id(md->eom_id, -1, "eom", vocab_size, path);
    v->add_space_prefix = bpe ? 0 : md->add_space_prefix, v->remove_extra_whitespaces = bpe ? 0 : md->remove_extra_whitespaces;
    v->add_bos = md->add_bos;
    read_gguf_strings(&v->piece, &v->piece_len, md->tokens, v->n, bytes, size, path, "a token");
    v->score = xmalloc(v->n * sizeof(float), "the vocabulary");
    // Without types, the tokenizer tells pieces apart by name (<0xNN>, and the special ids).
    v->type = md->types ? xmalloc(v->n * sizeof(int32_t), "the vocabulary") : NULL;
    for (int i = 0; i < v->n; i++) {
        if (md->scores) memcpy(&v->score[i], md->scores + 4 * (size_t)i, 4);
        if (md->types) v->type[i] = (int32_t)read_u32le(md->types + 4 * (size_t)i);
    }
    if (!bpe) return;
    if (md->merges) read_gguf_strings(&v->merge, &v->merge_len, md->merges, md->n_merges, bytes, size, path, "a merge");
    v->n_merges = (int)md->n_merges;
    // How text is cut into words: Llama 3's rule is the one implemented here.
    const GGUFString *pre = &md->tokenizer_pre;
    int llama3_vocab = v->n > 128000 && v->piece_len[128000] == 17 && memcmp(v->piece[128000], "<|begin_of_text|>", 17) == 0;
    if (pre->s == NULL && llama3_vocab) {
        warn("%s: no tokenizer.ggml.pre in the file (converted before llama.cpp recorded it); its vocabulary is Llama "
             "3's, so text is cut into words as Llama 3's is", path);
        v->ignore_merges = 1;
    } else if (pre->s == NULL) {
        fatal("%s: the BPE vocabulary does not say how to cut text into words (no tokenizer.ggml.pre); this program "
              "does it as Llama 3 does ('llama-bpe')", path);
    } else if (string_is(*pre, "llama-bpe") || string_is(*pre, "llama3") || string_is(*pre, "llama-v3")) {
        v->ignore_merges = 1; // Llama 3's tokenizer.json sets ignore_merges
    } else if (!string_is(*pre, "smaug-bpe")) { // Smaug: Llama 3's words, every one merged
        fatal("%s: the BPE vocabulary cuts text into words by the rule '%.*s'; this program implements Llama 3's "
              "('llama-bpe', 'llama3', 'llama-v3', 'smaug-bpe')", path, (int)(pre->len < 64 ? pre->len : 64), pre->s);
    }
}

static void free_gguf_vocabulary(GGUFVocab *v) {
    if (!v) return;
    free(v->piece), free(v->piece_len), free(v->score), free(v->type), free(v->merge), free(v->merge_len);
    memset(v, 0, sizeof(*v));
}

// The header: magic, version, and the counts of tensors and keys, checked.
static void read_gguf_header(GGUFReader *r, size_t size, uint64_t *n_tensors, uint64_t *n_kv) {
    const char *path = r->path;
    gguf_u32(r, "the magic");
    uint32_t version = gguf_u32(r, "the version");
    if (version != 2 && version != 3)
        fatal("%s: GGUF version %u%s; this program reads versions 2 and 3", path, version,
              version > 0xFFFF ? " (a big-endian file?)" : "");
    *n_tensors = gguf_u64(r, "the tensor count"), *n_kv = gguf_u64(r, "the key/value count");
    // Each tensor info takes 24 bytes at least: a bound that stops absurd counts before any allocation.
    if (*n_tensors > size / 24 || *n_kv > size / 12)
        fatal("%s: GGUF header claims %llu tensors and %llu keys, more than the file can hold", path,
              (unsigned long long)*n_tensors, (unsigned long long)*n_kv);
}

// -z FILE.gguf: the vocabulary of any GGUF file, a model or a vocabulary-only file such
// as llama.cpp's ggml-vocab-llama-spm.gguf; its tensors are not read.
static void tokenizer_from_gguf_file(Tokenizer *t, const unsigned char *bytes, size_t size, const char *path) {
    GGUFReader r = {bytes, bytes, bytes + size, path};
    uint64_t n_tensors, n_kv;
    read_gguf_header(&r, size, &n_tensors, &n_kv);
    GGUFMetadata md = read_gguf_metadata(&r, n_kv);
    if (!md.tokens) fatal("%s: GGUF file has no vocabulary (tokenizer.ggml.tokens)", path);
    if (!string_is(md.tokenizer_model, "llama") && !string_is(md.tokenizer_model, "gpt2"))
        fatal("%s: GGUF tokenizer of type '%.*s', expected SentencePiece's ('llama') or byte-level BPE's ('gpt2')", path,
              (int)md.tokenizer_model.len, md.tokenizer_model.s ? md.tokenizer_model.s : "");
    if (md.n_tokens < 3 || md.n_tokens > (1 << 24))
        fatal("%s: GGUF vocabulary of %llu tokens, expected between 3 and %d", path, (unsigned long long)md.n_tokens,
              1 << 24);
    GGUFVocab v = {0};
    read_gguf_vocabulary(&v, &md, (int)md.n_tokens, bytes, size, path);
    tokenizer_from_gguf(t, &v, path); // copies the pieces out of the file
    free_gguf_vocabulary(&v);
}

// Reads a GGUF file's header, metadata, tensor table and vocabulary, from
// bytes already in memory, and points the weights at their tensors there.
static void parse_gguf(Model *m, const unsigned char *bytes, size_t size, const char *path) {
    GGUFReader r = {bytes, bytes, bytes + size, path};
    uint64_t n_tensors, n_kv;
    read_gguf_header(&r, size, &n_tensors, &n_kv);

    GGUFMetadata md = read_gguf_metadata(&r, n_kv);
    if (md.alignment == 0 || md.alignment % 8 != 0 || md.alignment > (1 << 20))
        fatal("%s: general.alignment is %llu, expected a multiple of 8", path, (unsigned long long)md.alignment);
    GGUFTensors tt = {read_tensor_table(&r, n_tensors), n_tensors, NULL, 0, md.alignment, path};
    uint64_t data_start = ((uint64_t)(r.p - bytes) + md.alignment - 1) / md.alignment * md.alignment;
    if (data_start > size) fatal("%s: GGUF file ends before its tensor data begins", path);
    tt.data = bytes + data_start, tt.data_size = size - data_start;

    Config *c = &m->config;
    gguf_config(c, &md, &tt);
    point_weights_at_tensors(&m->weights, c, &tt); // each tensor the shape the metadata says, inside the file
    check_tensors_apart(&tt);
    free(tt.tensor);
    m->int8 = m->blocks = has_block_weights(&m->weights, c);
    if (m->int8) c->group_size = QBLOCK; // a block tensor's rows are whole blocks: gguf_row_bytes checked
    m->chat_template = md.chat_template.s, m->chat_template_len = md.chat_template.len; // kept for chat mode
    m->vocab = xmalloc(sizeof(GGUFVocab), "the vocabulary");
    read_gguf_vocabulary(m->vocab, &md, c->vocab_size, bytes, size, path);
}

// ============================================================================
// Chat formats
//
// The layouts of the chat model families (see chat, above), and how a model's
// file says which one it was trained on. Files carry their format as a Jinja
// template (tokenizer.chat_template). This program runs no Jinja: it
// recognises each family's templates by their markers, as llama.cpp's
// llm_chat_detect_template does, and lays the turns out itself. Markers such
// as [INST] or <|im_start|> go in as the vocabulary's control token of that
// text where it has one (Mistral v3's vocabulary has [INST]; ChatML
// fine-tunes add <|im_start|>), else as text, which is how Hugging Face's
// tokenizers read a rendered template. The tests hold every layout to its
// family's template rendered by Jinja (tests/chat_templates/).

static const char *const chat_format_names[CHAT_FORMATS] = {
    "llama2", "llama3", "llama3.1", "llama3.2", "mistral", "mistral-v1", "mistral-v3", "mistral-v3-tekken",
    "mistral-v7", "zephyr", "chatml"};

// The vocabulary's control or user-defined token whose text is s, or -1.
static int special_token(const Tokenizer *t, const char *s) {
    int len = (int)strlen(s);
    for (int i = 0; i < t->vocab_size; i++)
        if ((t->type[i] == PIECE_CONTROL || t->type[i] == PIECE_USER_DEFINED) && t->piece_len[i] == len &&
            memcmp(t->piece[i], s, len) == 0)
            return i;
    return -1;
}

// A marker of the layout: the control token of that text, else the text.
static void chat_marker(ChatBuilder *b, const char *s) {
    int id = special_token(b->t, s);
    if (id >= 0) chat_token(b, id);
    else chat_text_str(b, s);
}

// Text stripped of outer whitespace, as Python's str.strip() and Jinja's trim do it.
static void chat_stripped(ChatBuilder *b, const char *s, size_t n) {
    Text stripped = {0};
    text_append(&stripped, s, n);
    text_strip(&stripped);
    chat_text(b, stripped.data, stripped.len);
    free(stripped.data);
}

// A Llama 3 turn's header: <|start_header_id|>role<|end_header_id|>\n\n
static void llama3_header(ChatBuilder *b, const char *role) {
    chat_marker(b, "<|start_header_id|>");
    chat_text_str(b, role);
    chat_marker(b, "<|end_header_id|>");
    chat_text_str(b, "\n\n");
}

// What comes before the first user turn: <s>, and the system turn in the
// formats that give it one of its own.
static void chat_begin(ChatBuilder *b, const char *system) {
    int has_system = system && system[0];
    switch (b->format) {
    case CHAT_LLAMA2: // <s> starts every turn instead
        break;
    case CHAT_LLAMA3:
    case CHAT_LLAMA31:
    case CHAT_LLAMA32:
        chat_token(b, b->t->bos_id);
        if (!has_system && b->format == CHAT_LLAMA3) break;
        llama3_header(b, "system");
        if (b->format != CHAT_LLAMA3) { // Llama 3.1 and 3.2 always say what they know and when they are
            chat_text_str(b, "Cutting Knowledge Date: December 2023\nToday Date: ");
            chat_text_str(b, b->format == CHAT_LLAMA31 ? "26 Jul 2024" : b->date); // 3.1's template: a fixed date
            chat_text_str(b, "\n\n");
        }
        if (has_system) chat_stripped(b, system, strlen(system));
        chat_marker(b, "<|eot_id|>");
        break;
    case CHAT_MISTRAL_V7:
        chat_token(b, b->t->bos_id);
        if (!has_system) break;
        chat_marker(b, "[SYSTEM_PROMPT]");
        chat_text_str(b, " ");
        chat_text_str(b, system);
        chat_marker(b, "[/SYSTEM_PROMPT]");
        break;
    case CHAT_ZEPHYR: // no <s>: the template has none
        if (!has_system) break;
        chat_marker(b, "<|system|>");
        chat_text_str(b, "\n");
        chat_text_str(b, system);
        chat_token(b, b->t->eos_id);
        chat_text_str(b, "\n");
        break;
    case CHAT_CHATML: // no <s>: the template has none
        if (!has_system) break;
        chat_marker(b, "<|im_start|>");
        chat_text_str(b, "system\n");
        chat_text_str(b, system);
        chat_marker(b, "<|im_end|>");
        chat_text_str(b, "\n");
        break;
    default: // the Mistral formats
        chat_token(b, b->t->bos_id);
    }
}

// A user's turn, through to where the assistant's reply begins. The first
// carries the system prompt in the formats that fold it into a turn (Mistral
// v3's template puts it in the last user turn instead; a chat that keeps its
// cache cannot move it there, so it goes in the first, as llama.cpp does).
static void chat_user(ChatBuilder *b, const char *system, const char *user, size_t user_len, int first) {
    int with_system = first && system && system[0];
    Text content = {0};
    text_append(&content, "", 0);
    switch (b->format) {
    case CHAT_LLAMA2: // Meta's: the system prompt in <<SYS>> tags, the whole stripped
        chat_token(b, b->t->bos_id);
        if (with_system) {
            text_append_str(&content, "<<SYS>>\n");
            text_append_str(&content, system);
            text_append_str(&content, "\n<</SYS>>\n\n");
        }
        text_append(&content, user, user_len);
        text_strip(&content);
        chat_marker(b, "[INST]");
        chat_text_str(b, " ");
        chat_text(b, content.data, content.len);
        chat_text_str(b, " ");
        chat_marker(b, "[/INST]");
        break;
    case CHAT_LLAMA3:
    case CHAT_LLAMA31:
    case CHAT_LLAMA32:
        llama3_header(b, "user");
        chat_stripped(b, user, user_len);
        chat_marker(b, "<|eot_id|>");
        llama3_header(b, "assistant");
        break;
    case CHAT_ZEPHYR:
        chat_marker(b, "<|user|>");
        chat_text_str(b, "\n");
        chat_text(b, user, user_len);
        chat_token(b, b->t->eos_id);
        chat_text_str(b, "\n");
        chat_marker(b, "<|assistant|>");
        chat_text_str(b, "\n");
        break;
    case CHAT_CHATML:
        chat_marker(b, "<|im_start|>");
        chat_text_str(b, "user\n");
        chat_text(b, user, user_len);
        chat_marker(b, "<|im_end|>");
        chat_text_str(b, "\n");
        chat_marker(b, "<|im_start|>");
        chat_text_str(b, "assistant\n");
        break;
    default: { // the Mistral formats: [INST] {system}\n\n{user} [/INST], spaced each its own way
        ChatFormat f = b->format;
        if (with_system && f != CHAT_MISTRAL_V7) {
            text_append_str(&content, system);
            text_append_str(&content, "\n\n");
        }
        text_append(&content, user, user_len);
        if (f == CHAT_MISTRAL_V1) chat_text_str(b, " ");
        chat_marker(b, "[INST]");
        if (f != CHAT_MISTRAL_V3_TEKKEN) chat_text_str(b, " ");
        chat_text(b, content.data, content.len);
        if (f == CHAT_MISTRAL || f == CHAT_MISTRAL_V1) chat_text_str(b, " ");
        chat_marker(b, "[/INST]");
    }
    }
    free(content.data);
}

// What ends an assistant's reply.
static void chat_close(ChatBuilder *b) {
    switch (b->format) {
    case CHAT_LLAMA3:
    case CHAT_LLAMA31:
    case CHAT_LLAMA32:
        chat_marker(b, "<|eot_id|>");
        break;
    case CHAT_CHATML:
        chat_marker(b, "<|im_end|>");
        chat_text_str(b, "\n");
        break;
    case CHAT_ZEPHYR:
        chat_token(b, b->t->eos_id);
        chat_text_str(b, "\n");
        break;
    default: // Llama 2's and Mistral's </s>
        chat_token(b, b->t->eos_id);
    }
}

// The format a chat template asks for, by its markers (llama.cpp's rules for
// these families); CHAT_FORMATS if it is none of them.
static ChatFormat detect_chat_format(const char *tmpl, size_t n) {
#define HAS(s) (find_bytes(tmpl, n, s, strlen(s)) >= 0)
    if (HAS("<|im_start|>")) return CHAT_CHATML;
    if (HAS("<|start_header_id|>") && HAS("<|end_header_id|>"))
        return !HAS("Cutting Knowledge Date") ? CHAT_LLAMA3 : HAS("strftime_now") ? CHAT_LLAMA32 : CHAT_LLAMA31;
    if (HAS("[INST]")) {
        if (HAS("[SYSTEM_PROMPT]")) return CHAT_MISTRAL_V7;
        if (HAS("' [INST] ' + system_message") || HAS("[AVAILABLE_TOOLS]")) // Mistral's official v1, v3, v3-tekken
            return HAS(" [INST]") ? CHAT_MISTRAL_V1 : HAS("\"[INST]\"") ? CHAT_MISTRAL_V3_TEKKEN : CHAT_MISTRAL_V3;
        return HAS("<<SYS>>") ? CHAT_LLAMA2 : CHAT_MISTRAL; // Mistral 7B Instruct's first template has no system turn
    }
    if (HAS("<|user|>") && HAS("<|assistant|>") && !HAS("<|end|>")) return CHAT_ZEPHYR; // <|end|>: Phi-3's
    return CHAT_FORMATS;
#undef HAS
}

// The format to chat in: the one named (--chat-format), else the one the
// model's template asks for, else, for a file without a template, its
// vocabulary's family (llama2.c's files and Llama 2 GGUFs: Llama 2's).
static ChatFormat choose_chat_format(const char *name, const Model *m, const Tokenizer *t, const char *path) {
    for (int f = 0; name && f < CHAT_FORMATS; f++)
        if (strcmp(name, chat_format_names[f]) == 0) return (ChatFormat)f;
    if (name) fatal("unknown chat format '%s' (bug: the command line checks it)", name);
    if (m->chat_template) {
        ChatFormat f = detect_chat_format(m->chat_template, m->chat_template_len);
        if (f == CHAT_FORMATS)
            fatal("%s: its chat template is none of the formats this program lays out (llama2, llama3, llama3.1, "
                  "llama3.2, mistral, mistral-v1, mistral-v3, mistral-v3-tekken, mistral-v7, zephyr, chatml); choose "
                  "one with --chat-format NAME", path);
        return f;
    }
    if (!t->bpe) return CHAT_LLAMA2;
    if (special_token(t, "<|start_header_id|>") >= 0) return CHAT_LLAMA3;
    fatal("%s has no chat template and its vocabulary is not Llama 2's or Llama 3's; choose a format with "
          "--chat-format NAME", path);
    return CHAT_FORMATS;
}

// ============================================================================
// Top-p over a large vocabulary
//
// sample() with top-p alone keeps the most probable tokens until their mass
// passes topp, and draws from them in that order; select_candidates is the
// definition. Over a flat distribution (a high temperature, a random-weight
// model) that is most of Llama 3's 128,256 tokens, and taking them off a heap
// one at a time costs milliseconds a token. sample_topp draws the same token
// without sorting them. A probability's bits, read as an integer, keep its
// order (for numbers >= 0), so its top 16 (8 of exponent, 7 of mantissa) put
// it in one of PROB_BUCKETS buckets of values within 1% of each other. One
// pass adds up each bucket's mass; walking the buckets from the most probable
// finds the one where the kept mass passes topp and the one the coin falls in,
// and only those two are sorted. Its sums are in double, and in another order
// than select_candidates's float ones, so the two may part where the coin
// falls within a rounding of a boundary (over 100,000 tokens, float's drift).

static int prob_bucket(float p) {
    uint32_t bits;
    memcpy(&bits, &p, 4);
    bits >>= 16;
    return bits < PROB_BUCKETS ? (int)bits : 0; // NaN (or -0) with the least probable
}

static int rank_order(const void *a, const void *b) {
    const ProbIndex *x = a, *y = b;
    return ranks_before(*x, *y) ? -1 : ranks_before(*y, *x);
}

// The candidates cand[0..n) that are in bucket b, into s->chosen, most probable first; their count.
static int sorted_bucket(Sampler *s, const ProbIndex *cand, int n, int b) {
    int k = 0;
    for (int i = 0; i < n; i++) { // without a branch, as in sample_topp
        s->chosen[k] = cand[i];
        k += prob_bucket(cand[i].prob) == b;
    }
    qsort(s->chosen, k, sizeof(ProbIndex), rank_order);
    return k;
}

static int sample_topp(Sampler *s, const float *probs, float coin) {
    int n = s->vocab_size, n_cand = 0;
    float cutoff = (1.0f - s->topp) / (n - 1); // as in select_candidates: none below is ever needed
    for (int i = 0; i < n; i++) { // without a branch: which tokens pass is as good as random
        s->heap[n_cand] = (ProbIndex){probs[i], i};
        n_cand += probs[i] >= cutoff;
    }
    if (n_cand == 0)
        for (int i = 0; i < n; i++) s->heap[n_cand++] = (ProbIndex){probs[i], i};
    const ProbIndex *cand = s->heap;
    memset(s->bucket_mass, 0, PROB_BUCKETS * sizeof(double));
    memset(s->bucket_count, 0, PROB_BUCKETS * sizeof(int));
    for (int i = 0; i < n_cand; i++) {
        int b = prob_bucket(cand[i].prob);
        s->bucket_mass[b] += cand[i].prob, s->bucket_count[b]++;
    }
    // Whole buckets from the top while they do not pass topp; then, of the next (the edge),
    // its most probable members until they do.
    double kept = 0.0;
    int edge = PROB_BUCKETS - 1, m = 0, lowest = 0;
    for (; edge >= 0; edge--) {
        if (s->bucket_count[edge] == 0) continue;
        lowest = edge;
        if (kept + s->bucket_mass[edge] > s->topp) {
            int n_edge = sorted_bucket(s, cand, n_cand, edge);
            while (m < n_edge && !(kept > s->topp)) kept += s->chosen[m++].prob;
            break;
        }
        kept += s->bucket_mass[edge];
    }
    // The draw: where coin * kept falls, walking the kept mass from the most probable.
    double r = coin * kept, cdf = 0.0;
    for (int b = PROB_BUCKETS - 1; b > edge; b--) {
        if (s->bucket_count[b] == 0 || !(r < cdf + s->bucket_mass[b])) {
            cdf += s->bucket_mass[b];
            continue;
        }
        int k = sorted_bucket(s, cand, n_cand, b);
        for (int i = 0; i < k; i++)
            if (r < (cdf += s->chosen[i].prob)) return s->chosen[i].index;
        return s->chosen[k - 1].index; // the members' sum fell a rounding short of the bucket's
    }
    for (int i = 0; i < m; i++) // s->chosen still holds the edge's members: nothing above was sorted
        if (r < (cdf += s->chosen[i].prob)) return s->chosen[i].index;
    if (m > 0) return s->chosen[m - 1].index;
    return s->chosen[sorted_bucket(s, cand, n_cand, lowest) - 1].index; // no edge: a rounding kept everything
}

// ============================================================================
// Fast kernels
//
// The program above is complete: with only the plain kernels it runs every
// model correctly, just slower. What follows computes the same sums with
// SIMD instructions, one instruction set at a time (AVX-512, then AVX2, then
// NEON), and each fast kernel names the plain kernel it must equal; test_all.c
// holds every one of them to it. One binary carries them all: select_kernels()
// (at the end) asks the CPU at start-up which set it can run, so the same
// program works on any x86-64 or ARM64 machine.
//
// The matrix products are where the time goes. While generating there is one
// token, and the weights stream through once: the kernels read them as fast
// as memory delivers, one row at a time. While reading a prompt, a block of
// rows stays in cache while it meets every token of the block, and the
// kernels are bound by arithmetic: AVX-512 packs the rows into "panels" for
// that; AVX2 and NEON work on tiles of R rows by TT tokens, the R rows' loads
// shared by TT tokens and the TT tokens' loads by R rows, with R * TT sums in
// registers. The int8 kernels need group sizes that are multiples of 32
// (llama2.c's export uses 64, GGUF 32); others take the plain kernel.
//
// Figures behind the choices made here (bandwidths, speeds) were measured on
// one machine; bench/NOTES.md keeps them with the machine's name.

// expf, for the SIMD softmax and SwiGLU, the same way on every instruction
// set: e^x = 2^k e^r with k = round(x log2 e) and r = x - k ln 2, so that
// |r| <= ln 2 / 2, where the Taylor polynomial of e^r of degree 7 is within
// 6e-9 of it. ln 2 is split in two parts so that k times the first is exact.
#define EXP_LOG2E 1.44269504f
#define EXP_LN2_HI 0.693359375f     // ln 2 to 9 significant bits
#define EXP_LN2_LO -2.12194440e-4f  // ln 2 - EXP_LN2_HI
static const float exp_taylor[8] = {1.0f / 5040, 1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f};

// Each set's kernel for each block type: the shared code of the set with the
// type a constant, so each type's branches fold away. A type a set has no
// code for takes the plain kernel, blocks_rows_scalar, in that set's table.
#define BLOCK_ROWS_PARAMS                                                                                              \
    WeightType type, float *out, size_t out_stride, const uint8_t *w, size_t row_bytes, const Input *in, int rows

// A set whose weighted sums (WeightedRows) go a query at a time: its kernel for one, for each query.
#define EACH_QUERY(name, one, T)                                                                                      \
    static void name(float *out, size_t out_stride, const float *a, size_t a_stride, const T *v, size_t v_stride,     \
                     int n, int rows, int queries) {                                                                  \
        for (int q = 0; q < queries; q++) one(out + q * out_stride, a + q * a_stride, v, v_stride, n, rows);          \
    }

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define AVX512 __attribute__((target("avx2,fma,f16c,bmi2,avx512f,avx512bw,avx512vl,avx512vnni")))
#define INLINE inline __attribute__((always_inline))

// Asks for the cache line at p + offset. A prefetch never faults, so the
// kernels look ahead past the end of a matrix; C allows a pointer only up to
// one past an array, so the address is made as an integer.
static INLINE void prefetch(const void *p, size_t offset) {
    _mm_prefetch((const char *)((uintptr_t)p + offset), _MM_HINT_T0);
}

// The 32 values of a GGUF block as int8, in order (AVX2 instructions, which
// every AVX-512 CPU has too): Q8_0's as they are, Q4_0's unpacked to [-8, 7].
// Each equals decode_block's q.
AVX2 static INLINE __m256i load_q8_0(const uint8_t *block) {
    return _mm256_loadu_si256((const __m256i *)(block + 2));
}
AVX2 static INLINE __m256i unpack_q4_0(const uint8_t *block) {
    __m128i packed = _mm_loadu_si128((const __m128i *)(block + 2)), low4 = _mm_set1_epi8(15);
    __m128i lo = _mm_and_si128(packed, low4), hi = _mm_and_si128(_mm_srli_epi16(packed, 4), low4);
    return _mm256_sub_epi8(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(8));
}
AVX2 static INLINE __m256i block_values(const uint8_t *block, WeightType type) {
    return type == WEIGHT_Q8_0 ? load_q8_0(block) : unpack_q4_0(block);
}

// ----------------------------------------------------------------------------
// Fast kernels: AVX-512 (with VNNI): 16 floats or 64 bytes a register, 32 registers

// The lanes of a chunk of 16 floats with `left` values still to go: all of
// them, or the first `left` of the last, partial chunk (none if left <= 0).
AVX512 static INLINE __mmask16 chunk_mask16(int left) {
    return left >= 16 ? (__mmask16)0xFFFF : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1);
}

// acc + the dot products of the signed bytes of w and x, 4 bytes a 32-bit
// lane. vpdpbusd multiplies unsigned bytes by signed ones, so each w * x is
// taken as |w| * (x with w's sign): exact for every w, -128 included (|-128|
// is 128 as an unsigned byte), and for every x but -128, which quantize()
// never makes.
AVX512 static INLINE __m512i dot_i8_avx512(__m512i acc, __m512i w, __m512i x) {
    __m512i x_signed = _mm512_mask_sub_epi8(x, _mm512_movepi8_mask(w), _mm512_setzero_si512(), x);
    return _mm512_dpbusd_epi32(acc, _mm512_abs_epi8(w), x_signed);
}

// A step of 64 int8 values spans two groups of 32: their scales, lo in the
// low 8 lanes and hi in the high 8, to multiply the step's 16 lane sums.
AVX512 static INLINE __m512 two_group_scales(float lo, float hi) {
    const __m512i halves = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    return _mm512_permutexvar_ps(halves, _mm512_castps128_ps512(_mm_setr_ps(lo, hi, 0.0f, 0.0f)));
}

// Prompt blocks of at least this many tokens go through the panels below;
// fewer (generation, or a prompt's short last block) go row by row, as
// packing a panel costs more than a token or two gains from it.
#define PANEL_MIN_TOKENS 4

// Runs TILE(t, TT) over `tokens` tokens in tiles of TT tokens starting at t,
// each TT a constant so that a tile's loops unroll into TT registers of sums:
// tiles of LARGEST while they fit, then at most one each of 8, 4, 2 and 1.
#define FOR_EACH_TOKEN_TILE(tokens, LARGEST, TILE)                                                                     \
    do {                                                                                                               \
        int t_ = 0;                                                                                                    \
        for (; t_ + (LARGEST) <= (tokens); t_ += (LARGEST)) TILE(t_, LARGEST);                                         \
        if ((LARGEST) > 8 && (tokens) - t_ >= 8) TILE(t_, 8), t_ += 8;                                                 \
        if ((tokens) - t_ >= 4) TILE(t_, 4), t_ += 4;                                                                  \
        if ((tokens) - t_ >= 2) TILE(t_, 2), t_ += 2;                                                                  \
        if ((tokens) - t_ >= 1) TILE(t_, 1), t_ += 1;                                                                  \
    } while (0)

// --- float32 weights: f32_rows_avx512 = f32_rows_scalar

// One row by one token: how float32 weights stream while generating. One
// sequential stream per thread is what the hardware prefetcher follows best
// (better than tiles of 4 rows), and four accumulators keep four FMAs in
// flight. llama2.c's files put the weights 28 bytes past a 64-byte boundary,
// and a load across two cache lines costs two: the first few values of a row
// go alone, so that the loads of the rest are aligned.
AVX512 static float f32_row_avx512(const float *w, const float *x, int n) {
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    int j = (int)((64 - ((uintptr_t)w & 63)) & 63) / 4; // values before a 64-byte boundary (w is 4-byte aligned)
    if (j > n) j = n;
    if (j > 0) acc[1] = _mm512_mul_ps(_mm512_maskz_loadu_ps(chunk_mask16(j), w), _mm512_maskz_loadu_ps(chunk_mask16(j), x));
    for (; j + 64 <= n; j += 64)
        for (int k = 0; k < 4; k++)
            acc[k] = _mm512_fmadd_ps(_mm512_loadu_ps(w + j + 16 * k), _mm512_loadu_ps(x + j + 16 * k), acc[k]);
    for (; j < n; j += 16) {
        __mmask16 m = chunk_mask16(n - j);
        acc[0] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w + j), _mm512_maskz_loadu_ps(m, x + j), acc[0]);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
}

// Prompt blocks: the broadcast form. The row kernel above sums along a row
// inside each register and must add its lanes up at the end; here each 32-bit
// lane of a register belongs to a different row instead. A "panel" holds 16
// rows side by side, the same column of each per 64-byte line, and one FMA
// multiplies a line by one activation of one token, broadcast to every lane:
// 16 rows move on by one value and no lanes are ever added across. Packing
// rows into a panel is a transpose, paid once per block of rows and reused by
// every token of the prompt block. Each sum still runs over j in order, but
// in other roundings than the one-token kernel's: prompt and generation agree
// to float32 precision, not to the bit.
#define PANEL_ROWS 16    // one row per 32-bit lane of a zmm
#define PANEL_FLOATS 256 // values of each row packed at once: a 16 KB panel, half of a 32 KB L1

// A 16 x 16 transpose of 4-byte words: v[r] holds word c of row r at lane c;
// dst + 64 c gets column c, row r at lane r. Four rounds of shuffles: within
// each 128-bit lane, words of row pairs, then of row quads; then whole 128-bit
// lanes between the four quads. v is used as scratch.
AVX512 static INLINE void transpose16_store(void *dst, __m512i v[16]) {
    __m512i u[16];
    for (int r = 0; r < 16; r += 2) {
        u[r] = _mm512_unpacklo_epi32(v[r], v[r + 1]);
        u[r + 1] = _mm512_unpackhi_epi32(v[r], v[r + 1]);
    }
    for (int q = 0; q < 4; q++) { // v[4q + i]: rows 4q..4q+3, word 4L + i of each 128-bit lane L
        v[4 * q + 0] = _mm512_unpacklo_epi64(u[4 * q], u[4 * q + 2]);
        v[4 * q + 1] = _mm512_unpackhi_epi64(u[4 * q], u[4 * q + 2]);
        v[4 * q + 2] = _mm512_unpacklo_epi64(u[4 * q + 1], u[4 * q + 3]);
        v[4 * q + 3] = _mm512_unpackhi_epi64(u[4 * q + 1], u[4 * q + 3]);
    }
    __m512i *out = dst;
    for (int i = 0; i < 4; i++) {
        __m512i a = _mm512_shuffle_i32x4(v[i], v[4 + i], 0x44), b = _mm512_shuffle_i32x4(v[i], v[4 + i], 0xEE);
        __m512i c = _mm512_shuffle_i32x4(v[8 + i], v[12 + i], 0x44), d = _mm512_shuffle_i32x4(v[8 + i], v[12 + i], 0xEE);
        _mm512_store_si512(out + 0 + i, _mm512_shuffle_i32x4(a, c, 0x88));
        _mm512_store_si512(out + 4 + i, _mm512_shuffle_i32x4(a, c, 0xDD));
        _mm512_store_si512(out + 8 + i, _mm512_shuffle_i32x4(b, d, 0x88));
        _mm512_store_si512(out + 12 + i, _mm512_shuffle_i32x4(b, d, 0xDD));
    }
}

// panel[j * 16 + r] = w[r * w_stride + j] as float32 for j < len; rows from
// `rows` to 16 hold 0. w holds float32, or GGUF's float16 or bfloat16
// (widened here, once per block of tokens).
AVX512 static void pack_float_panel_avx512(float *panel, WeightType type, const void *w, size_t w_stride, int rows,
                                           int len) {
    for (int j = 0; j < len; j += 16) {
        __mmask16 m = chunk_mask16(len - j);
        __m512i v[16];
        for (int r = 0; r < 16; r++) {
            v[r] = _mm512_setzero_si512();
            if (r >= rows) continue;
            if (type == WEIGHT_F32) {
                v[r] = _mm512_castps_si512(_mm512_maskz_loadu_ps(m, (const float *)w + r * w_stride + j));
            } else {
                __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)w + r * w_stride + j);
                v[r] = type == WEIGHT_BF16 ? _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)
                                           : _mm512_castps_si512(_mm512_cvtph_ps(h));
            }
        }
        transpose16_store(panel + (size_t)j * 16, v);
    }
}

// TT tokens against one panel of len values: out (TT tokens, 16 rows) gets
// the panel's share of the sums, added to what is there unless `first`. x
// starts at the panel's first value of the first token. Unless NULL, `next`
// is the next panel's first row, rows row_bytes apart, values `size` bytes:
// it is fetched into L1 a line of each row at a time, spread through the
// work, so that the next packing finds it there instead of waiting for DRAM
// 16 rows at a time.
AVX512 static INLINE void f32_panel_tile_avx512(float *out, size_t out_stride, __mmask16 row_mask, const float *panel,
                                                const float *x, size_t x_stride, int len, int first, const void *next,
                                                size_t row_bytes, int size, const int TT) {
    __m512 acc[12];
    for (int t = 0; t < TT; t++)
        acc[t] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(row_mask, out + t * out_stride);
    for (int j = 0; j < len; j++) {
        if (next && j * size % 64 == 0)
            for (int r = 0; r < PANEL_ROWS; r++) prefetch(next, r * row_bytes + (size_t)j * size);
        __m512 wv = _mm512_load_ps(panel + (size_t)j * 16);
        for (int t = 0; t < TT; t++) acc[t] = _mm512_fmadd_ps(wv, _mm512_set1_ps(x[t * x_stride + j]), acc[t]);
    }
    for (int t = 0; t < TT; t++) _mm512_mask_storeu_ps(out + t * out_stride, row_mask, acc[t]);
}

// out (tokens, rows) = x (tokens, n) @ w^T panel by panel; w (rows, w_stride
// values apart) is float32, float16 or bfloat16.
AVX512 static void float_rows_panel_avx512(float *out, size_t out_stride, WeightType type, const void *w,
                                           size_t w_stride, const float *x, size_t x_stride, int n, int rows,
                                           int tokens) {
    _Alignas(64) float panel[PANEL_ROWS * PANEL_FLOATS];
    int size = type == WEIGHT_F32 ? 4 : 2;
    size_t row_bytes = w_stride * size;
    for (int r0 = 0; r0 < rows; r0 += PANEL_ROWS) {
        int nr = rows - r0 < PANEL_ROWS ? rows - r0 : PANEL_ROWS;
        __mmask16 row_mask = chunk_mask16(nr);
        for (int j0 = 0; j0 < n; j0 += PANEL_FLOATS) {
            int len = n - j0 < PANEL_FLOATS ? n - j0 : PANEL_FLOATS;
            const char *rows_at = (const char *)w + r0 * row_bytes;
            pack_float_panel_avx512(panel, type, rows_at + (size_t)j0 * size, w_stride, nr, len);
            // What the next panel packs: the rest of these rows, or the next
            // rows (maybe the next call's). The first tile fetches it.
            size_t ahead = j0 + PANEL_FLOATS < n ? (size_t)(j0 + PANEL_FLOATS) * size : PANEL_ROWS * row_bytes;
            const void *next = (const void *)((uintptr_t)rows_at + ahead);
            int first = j0 == 0;
#define F32_TILE(t, TT)                                                                                                \
    f32_panel_tile_avx512(out + r0 + (t) * out_stride, out_stride, row_mask, panel, x + (t) * x_stride + j0, x_stride, \
                          len, first, (t) == 0 ? next : NULL, row_bytes, size, TT)
            FOR_EACH_TOKEN_TILE(tokens, 12, F32_TILE);
#undef F32_TILE
        }
    }
}

AVX512 static void f32_rows_avx512(float *out, size_t out_stride, const float *w, size_t w_stride, const float *x,
                                   size_t x_stride, int n, int rows, int tokens) {
    if (tokens >= PANEL_MIN_TOKENS) {
        float_rows_panel_avx512(out, out_stride, WEIGHT_F32, w, w_stride, x, x_stride, n, rows, tokens);
        return;
    }
    // A token or a few: row by row; a second token finds the rows in cache.
    for (int t = 0; t < tokens; t++)
        for (int r = 0; r < rows; r++) out[t * out_stride + r] = f32_row_avx512(w + r * w_stride, x + t * x_stride, n);
}

// --- F16 and BF16 weights: f16_rows_avx512 = f16_rows_scalar, bf16_rows_avx512 = bf16_rows_scalar

// 16 values of a row of 16-bit floats, widened: F16C's vcvtph2ps for F16, a
// shift for BF16.
AVX512 static INLINE __m512 load16_half(const uint16_t *p, WeightType type) {
    __m256i h = _mm256_loadu_si256((const __m256i *)p);
    return type == WEIGHT_F16 ? _mm512_cvtph_ps(h) : _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// A prompt goes through the float32 panels, widened as they are packed; a
// token or a few as f32_row_avx512 does, a row at a time with four sums in
// flight. type is a constant at each call.
AVX512 static INLINE void half_rows_avx512(float *out, size_t out_stride, const uint16_t *w, size_t w_stride,
                                           const float *x, size_t x_stride, int n, int rows, int tokens,
                                           const WeightType type) {
    if (tokens >= PANEL_MIN_TOKENS) {
        float_rows_panel_avx512(out, out_stride, type, w, w_stride, x, x_stride, n, rows, tokens);
        return;
    }
    for (int t = 0; t < tokens; t++)
        for (int r = 0; r < rows; r++) {
            const uint16_t *wr = w + r * w_stride;
            const float *xt = x + t * x_stride;
            __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
            int j = 0;
            for (; j + 64 <= n; j += 64)
                for (int k = 0; k < 4; k++)
                    acc[k] = _mm512_fmadd_ps(load16_half(wr + j + 16 * k, type), _mm512_loadu_ps(xt + j + 16 * k), acc[k]);
            for (; j + 16 <= n; j += 16) acc[0] = _mm512_fmadd_ps(load16_half(wr + j, type), _mm512_loadu_ps(xt + j), acc[0]);
            float sum = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
            for (; j < n; j++) sum += half_to_f32(wr[j], type) * xt[j];
            out[t * out_stride + r] = sum;
        }
}

AVX512 static void f16_rows_avx512(float *out, size_t out_stride, const uint16_t *w, size_t w_stride, const float *x,
                                   size_t x_stride, int n, int rows, int tokens) {
    half_rows_avx512(out, out_stride, w, w_stride, x, x_stride, n, rows, tokens, WEIGHT_F16);
}

AVX512 static void bf16_rows_avx512(float *out, size_t out_stride, const uint16_t *w, size_t w_stride, const float *x,
                                    size_t x_stride, int n, int rows, int tokens) {
    half_rows_avx512(out, out_stride, w, w_stride, x, x_stride, n, rows, tokens, WEIGHT_BF16);
}

// --- int8 weights (llama2.c's, and the int8 panels GGUF's Q8_0 and Q4_0 prompts use too):
// --- q8_rows_avx512 = q8_rows_scalar

// Prompt blocks in int8: the broadcast form again (see the float32 panels
// above), with 4 consecutive int8 weights of each row per 32-bit lane: one
// vpdpbusd multiplies 16 rows by 4 activations of one token, broadcast.
//
// Here the broadcast operand is the activations, which vpdpbusd takes as
// signed bytes, so they stay signed and the weights become unsigned instead
// of using dot_i8_avx512's sign trick: w + 128 (the top bit flipped). That
// adds 128 * (the sum of the group's activations) to each group's sum, and
// the sum starts at minus that instead of zero (quantize() keeps the sums).
//
// acc + vpdpbusd(u8, the 4 signed bytes at s8 in every lane). GCC 12 copies
// the intrinsic's accumulator to a fresh register and back at every use, and
// loads the broadcast separately, which cost much of this kernel's time
// (bench/NOTES.md). Written out, the instruction keeps each sum in one
// register and reads the 4 bytes itself.
AVX512 static INLINE __m512i dpbusd512_broadcast(__m512i acc, __m512i u8, const int8_t *s8) {
#if defined(__GNUC__) && !defined(__clang__)
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(u8), "m"(*(const char(*)[4])s8));
    return acc;
#else
    int32_t four;
    memcpy(&four, s8, 4);
    return _mm512_dpbusd_epi32(acc, u8, _mm512_set1_epi32(four));
#endif
}

// acc + vpdpbusd(u8, s8), as dpbusd512_broadcast, s8 in a register: where two
// panels share each broadcast, one load for both.
AVX512 static INLINE __m512i dpbusd512(__m512i acc, __m512i u8, __m512i s8) {
#if defined(__GNUC__) && !defined(__clang__)
    __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u8), "v"(s8));
    return acc;
#else
    return _mm512_dpbusd_epi32(acc, u8, s8);
#endif
}

#define PANEL_VALUES 1024 // int8 values of each row packed at once: a 16 KB panel

// Where a panel's int8 rows come from: llama2.c's Q8 rows, their scales
// apart, or GGUF's Q8_0 and Q4_0 blocks, 32 values after a float16 scale.
typedef struct {
    WeightType type;     // WEIGHT_Q8, WEIGHT_Q8_0 or WEIGHT_Q4_0
    const uint8_t *data; // the first row
    size_t row_bytes;
    const float *scale;  // WEIGHT_Q8: scale_stride per row
    size_t scale_stride;
    int gs;              // values per scale: 32 for the blocks
    size_t group_bytes;  // from one group of a row to the next
} Int8Rows;

// Where value j of row r is (for blocks, j is at the start of one).
static const uint8_t *int8_at(const Int8Rows *w, int r, int j) {
    return w->data + (size_t)r * w->row_bytes + (size_t)(j / w->gs) * w->group_bytes + j % w->gs;
}

// panel[(j / 4) * 64 + r * 4 + j % 4] = value j0 + j of row r0 + r, plus 128
// (as uint8), for j < len, and panel_scale[g * 16 + r] = the scale of its
// group g; rows from `rows` to 16 hold weight 0 (byte 128) and scale 0. len
// is a multiple of 32.
AVX512 static void pack_int8_panel_avx512(uint8_t *panel, float *panel_scale, const Int8Rows *w, int r0, int rows,
                                          int j0, int len) {
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    for (int j = 0; j < len; j += 64) {
        int two = len - j >= 64; // 64 values, or the last 32
        __m512i v[16];
        for (int r = 0; r < 16; r++) {
            __m512i values = _mm512_setzero_si512();
            const uint8_t *p = r < rows ? int8_at(w, r0 + r, j0 + j) : NULL;
            if (p && w->type == WEIGHT_Q8) {
                values = _mm512_maskz_loadu_epi8(two ? ~(__mmask64)0 : 0xFFFFFFFFull, p);
            } else if (p) {
                __m256i lo = block_values(p, w->type), hi = _mm256_setzero_si256();
                if (two) hi = block_values(p + w->group_bytes, w->type);
                values = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
            }
            v[r] = _mm512_xor_si512(values, flip);
        }
        transpose16_store(panel + (size_t)j * 16, v);
    }
    for (int g = 0; g < len / w->gs; g++)
        for (int r = 0; r < PANEL_ROWS; r++) {
            int group = j0 / w->gs + g;
            float scale = 0.0f;
            if (r < rows && w->type == WEIGHT_Q8) scale = w->scale[(size_t)(r0 + r) * w->scale_stride + group];
            if (r < rows && w->type != WEIGHT_Q8) scale = _cvtsh_ss(load_u16(int8_at(w, r0 + r, group * w->gs)));
            panel_scale[g * PANEL_ROWS + r] = scale;
        }
}

// One step of a tile of P panels (1 or 2, panel_bytes apart) by TT tokens:
// isum[p][t] += vpdpbusd(panel p's line at `line`, token t's 4 values at x +
// t x_stride, broadcast). Two panels share each broadcast; a lone panel
// takes it inside its vpdpbusd.
AVX512 static INLINE void panels_step_avx512(__m512i isum[2][8], const uint8_t *line, size_t panel_bytes,
                                             const int8_t *x, size_t x_stride, const int P, const int TT) {
    __m512i wv[2];
    for (int p = 0; p < P; p++) wv[p] = _mm512_load_si512(line + p * panel_bytes);
    for (int t = 0; t < TT; t++) {
        if (P == 1) {
            isum[0][t] = dpbusd512_broadcast(isum[0][t], wv[0], x + t * x_stride);
            continue;
        }
        int32_t bytes;
        memcpy(&bytes, x + t * x_stride, 4);
        __m512i x4 = _mm512_set1_epi32(bytes);
        for (int p = 0; p < P; p++) isum[p][t] = dpbusd512(isum[p][t], wv[p], x4);
    }
}

// TT tokens against P panels (1 or 2, PANEL_ROWS * PANEL_VALUES bytes apart,
// their scales PANEL_ROWS * PANEL_VALUES / 32 floats apart) of `groups`
// groups: out (TT tokens, 16 P rows) gets the panels' share of the sums,
// added to what is there unless `first`. x, x_scale and x_sum start at the
// panel's first value (group) of the first token. Two panels share each
// token's 4 broadcast values (see block_panel_tile_avx512). Unless NULL,
// `next` is the next panels' first row (row_bytes apart, a group every
// group_bytes): it is fetched into L1 a group at a time, spread through the
// work, so the next packing finds it there instead of waiting for DRAM 16
// rows at a time.
AVX512 static INLINE void int8_panel_tile_avx512(float *out, size_t out_stride, const __mmask16 *row_mask,
                                                 const uint8_t *panel, const float *w_scale, const int8_t *x,
                                                 const float *x_scale, const int32_t *x_sum, size_t x_stride,
                                                 int groups, int gs, int first, const void *next, size_t row_bytes,
                                                 size_t group_bytes, const int P, const int TT) {
    const size_t panel_bytes = PANEL_ROWS * PANEL_VALUES, scales_floats = PANEL_ROWS * (PANEL_VALUES / 32);
    size_t x_groups = x_stride / gs;
    __m512 acc[2][8];
    for (int p = 0; p < P; p++)
        for (int t = 0; t < TT; t++)
            acc[p][t] = first ? _mm512_setzero_ps()
                              : _mm512_maskz_loadu_ps(row_mask[p], out + t * out_stride + PANEL_ROWS * p);
    for (int g = 0; g < groups; g++) {
        __m512i isum[2][8];
        for (int t = 0; t < TT; t++) {
            isum[0][t] = _mm512_set1_epi32(-128 * x_sum[t * x_groups + g]);
            if (P == 2) isum[1][t] = isum[0][t];
        }
        if (next)
            for (int r = 0; r < P * PANEL_ROWS; r++) prefetch(next, r * row_bytes + g * group_bytes);
        const int8_t *xg = x + (size_t)g * gs;
        for (int k = 0; k < gs; k += 4)
            panels_step_avx512(isum, panel + (size_t)g * gs * 16 + k * 16, panel_bytes, xg + k, x_stride, P, TT);
        for (int p = 0; p < P; p++) {
            __m512 wscale = _mm512_load_ps(w_scale + p * scales_floats + g * 16);
            for (int t = 0; t < TT; t++)
                acc[p][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[p][t]),
                                            _mm512_mul_ps(wscale, _mm512_set1_ps(x_scale[t * x_groups + g])),
                                            acc[p][t]);
        }
    }
    for (int p = 0; p < P; p++)
        for (int t = 0; t < TT; t++)
            _mm512_mask_storeu_ps(out + t * out_stride + PANEL_ROWS * p, row_mask[p], acc[p][t]);
}

// out (tokens, rows) = x (tokens, n) @ w^T, int8 panel by panel, two at a
// time where rows has 32; w's group size a multiple of 32, at most PANEL_VALUES.
AVX512 static void int8_rows_panel_avx512(float *out, size_t out_stride, const Int8Rows *w, const int8_t *xq,
                                          const float *x_scale, const int32_t *x_sum, size_t x_stride, int n,
                                          int rows, int tokens) {
    _Alignas(64) uint8_t panel[2 * PANEL_ROWS * PANEL_VALUES];
    _Alignas(64) float panel_scale[2 * PANEL_ROWS * (PANEL_VALUES / 32)];
    int gs = w->gs, chunk = PANEL_VALUES / gs * gs;
    size_t x_groups = x_stride / gs;
    for (int r0 = 0; r0 < rows; r0 += 2 * PANEL_ROWS) {
        int nr = rows - r0 < 2 * PANEL_ROWS ? rows - r0 : 2 * PANEL_ROWS, panels = nr > PANEL_ROWS ? 2 : 1;
        __mmask16 row_mask[2] = {chunk_mask16(nr), chunk_mask16(nr - PANEL_ROWS)};
        for (int j0 = 0; j0 < n; j0 += chunk) {
            int len = n - j0 < chunk ? n - j0 : chunk, groups = len / gs, g0 = j0 / gs;
            for (int p = 0; p < panels; p++) {
                int panel_rows = nr - p * PANEL_ROWS < PANEL_ROWS ? nr - p * PANEL_ROWS : PANEL_ROWS;
                pack_int8_panel_avx512(panel + p * PANEL_ROWS * PANEL_VALUES,
                                       panel_scale + p * PANEL_ROWS * (PANEL_VALUES / 32), w, r0 + p * PANEL_ROWS,
                                       panel_rows, j0, len);
            }
            // What the next panels pack: the rest of these rows, or the next
            // rows (maybe the next call's). The first tile fetches it.
            size_t next_rows = (size_t)(r0 + panels * PANEL_ROWS) * w->row_bytes;
            const void *next = j0 + chunk < n ? (const void *)int8_at(w, r0, j0 + chunk)
                                              : (const void *)((uintptr_t)w->data + next_rows);
            int first = j0 == 0;
#define INT8_TILE(P, t, TT)                                                                                            \
    int8_panel_tile_avx512(out + r0 + (t) * out_stride, out_stride, row_mask, panel, panel_scale,                      \
                           xq + j0 + (t) * x_stride, x_scale + g0 + (t) * x_groups, x_sum + g0 + (t) * x_groups,       \
                           x_stride, groups, gs, first, (t) == 0 ? next : NULL, w->row_bytes, w->group_bytes, P, TT)
#define ONE_PANEL(t, TT) INT8_TILE(1, t, TT)
#define TWO_PANELS(t, TT) INT8_TILE(2, t, TT)
            if (panels == 2) FOR_EACH_TOKEN_TILE(tokens, 6, TWO_PANELS);
            else FOR_EACH_TOKEN_TILE(tokens, 8, ONE_PANEL);
#undef INT8_TILE
#undef ONE_PANEL
#undef TWO_PANELS
        }
    }
}

// One row by one token, 64 bytes a step: how int8 weights stream while
// generating. A single sequential stream per thread is what the hardware
// prefetcher follows best (interleaving 4 rows halved what one core drew).
// gs is 32 or a multiple of 64; with 32, a step spans two groups.
//
// Software prefetch this far ahead of the row being read: the hardware
// prefetcher alone left int8 weights well short of what float32 ones draw.
// The rows of a block are contiguous, so it runs on into the next rows.
#define PREFETCH_BYTES 4096
AVX512 static void q8_row_avx512(float *out, const int8_t *w, const float *w_scale, const int8_t *x,
                                 const float *x_scale, int n, int gs) {
    __m512 acc = _mm512_setzero_ps();
    const __m512i zero = _mm512_setzero_si512();
    if (gs == 32) {
        for (int j = 0; j < n; j += 64) {
            int g = j / 32, whole = n - j >= 64;
            __mmask64 m = whole ? ~(__mmask64)0 : 0xFFFFFFFFull; // the last step may hold one group
            __m512i wv = _mm512_maskz_loadu_epi8(m, w + j), xv = _mm512_maskz_loadu_epi8(m, x + j);
            prefetch(w, j + PREFETCH_BYTES);
            __m512i isum = dot_i8_avx512(zero, wv, xv);
            __m512 scales = two_group_scales(w_scale[g] * x_scale[g], whole ? w_scale[g + 1] * x_scale[g + 1] : 0.0f);
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), scales, acc);
        }
    } else if (gs == 64) { // llama2.c's groups: two at a time, two chains of FMAs
        __m512 acc2 = _mm512_setzero_ps();
        int g = 0;
        for (; g + 2 <= n / 64; g += 2) {
            const int8_t *wg = w + g * 64, *xg = x + g * 64;
            prefetch(wg, PREFETCH_BYTES), prefetch(wg, PREFETCH_BYTES + 64);
            __m512i i0 = dot_i8_avx512(zero, _mm512_loadu_si512(wg), _mm512_loadu_si512(xg));
            __m512i i1 = dot_i8_avx512(zero, _mm512_loadu_si512(wg + 64), _mm512_loadu_si512(xg + 64));
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i0), _mm512_set1_ps(w_scale[g] * x_scale[g]), acc);
            acc2 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i1), _mm512_set1_ps(w_scale[g + 1] * x_scale[g + 1]), acc2);
        }
        if (g < n / 64) {
            __m512i i0 = dot_i8_avx512(zero, _mm512_loadu_si512(w + g * 64), _mm512_loadu_si512(x + g * 64));
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i0), _mm512_set1_ps(w_scale[g] * x_scale[g]), acc);
        }
        acc = _mm512_add_ps(acc, acc2);
    } else {
        for (int g = 0; g < n / gs; g++) {
            __m512i isum = zero;
            for (int j = g * gs; j < (g + 1) * gs; j += 64) {
                prefetch(w, j + PREFETCH_BYTES);
                isum = dot_i8_avx512(isum, _mm512_loadu_si512(w + j), _mm512_loadu_si512(x + j));
            }
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(w_scale[g] * x_scale[g]), acc);
        }
    }
    *out = _mm512_reduce_add_ps(acc);
}

AVX512 static void q8_rows_avx512(float *out, size_t out_stride, const int8_t *wq, const float *w_scale,
                                  size_t w_stride, const int8_t *xq, const float *x_scale, const int32_t *x_sum,
                                  size_t x_stride, int n, int gs, int rows, int tokens) {
    int row_kernel = gs == 32 || gs % 64 == 0, panel_kernel = gs % 32 == 0 && gs <= PANEL_VALUES;
    size_t w_groups = w_stride / gs, x_groups = x_stride / gs;
    if (panel_kernel && (tokens >= PANEL_MIN_TOKENS || !row_kernel)) {
        Int8Rows w = {WEIGHT_Q8, (const uint8_t *)wq, w_stride, w_scale, w_groups, gs, gs};
        int8_rows_panel_avx512(out, out_stride, &w, xq, x_scale, x_sum, x_stride, n, rows, tokens);
    } else if (row_kernel) { // as for float32: a token or a few, row by row
        for (int t = 0; t < tokens; t++)
            for (int r = 0; r < rows; r++)
                q8_row_avx512(out + t * out_stride + r, wq + r * w_stride, w_scale + r * w_groups, xq + t * x_stride,
                              x_scale + t * x_groups, n, gs);
    } else {
        q8_rows_scalar(out, out_stride, wq, w_scale, w_stride, xq, x_scale, x_sum, x_stride, n, gs, rows, tokens);
    }
}

// --- GGUF's block types: rows_avx512_<type> = blocks_rows_scalar

// The 32 values of a block of 32 as int8 (decode_block's q), in order: Q8_0's
// as they are; the nibbles of Q4_0, Q4_1 and IQ4_NL (looked up in
// iq4_levels, 16 bytes that vpshufb indexes in each 128-bit lane) and of
// Q5_0 and Q5_1, whose fifth bits are a 32-bit mask, one bit per value.
AVX512 static INLINE __m256i block32_values(const uint8_t *block, const WeightType type) {
    if (type == WEIGHT_Q8_0) return load_q8_0(block);
    if (type == WEIGHT_Q4_0) return unpack_q4_0(block);
    int at = type == WEIGHT_Q4_1 ? 4 : type == WEIGHT_Q5_0 ? 6 : type == WEIGHT_Q5_1 ? 8 : 2; // the nibbles
    __m128i packed = _mm_loadu_si128((const __m128i *)(block + at)), low4 = _mm_set1_epi8(15);
    __m256i v = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(packed, 4), low4), _mm_and_si128(packed, low4));
    if (type == WEIGHT_IQ4_NL) {
        __m128i levels = _mm_loadu_si128((const __m128i *)iq4_levels);
        return _mm256_shuffle_epi8(_mm256_set_m128i(levels, levels), v);
    }
    if (type == WEIGHT_Q5_0 || type == WEIGHT_Q5_1) {
        __mmask32 fifth = load_u32(block + at - 4);
        v = _mm256_or_si256(v, _mm256_maskz_mov_epi8(fifth, _mm256_set1_epi8(16)));
        if (type == WEIGHT_Q5_0) v = _mm256_sub_epi8(v, _mm256_set1_epi8(16));
    }
    return v;
}

// Blocks of 256 (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS). Each is taken as
// unsigned bytes u = q + bias (bias: 4 for Q3_K, 32 for Q6_K, 128 for IQ4_XS's
// levels, else 0), so that vpdpbusd multiplies them by the signed input as
// they are, with no sign trick, and the bias joins the offsets:
//     w = scale * q + offset = scale * u + (offset - bias * scale)
// The offsets, one per 16 values, are then multiplied by the input's sums per
// 16 (quantize() keeps them), once per block.

// A block's scales and offsets per 16 values, bias included (16 lanes each).
typedef struct {
    __m512 scale, offset;
} Scales16;

// 16 bytes -> 16 floats.
AVX512 static INLINE __m512 u8_to_ps(__m128i v) { return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v)); }
AVX512 static INLINE __m512 i8_to_ps(__m128i v) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(v)); }

AVX512 static INLINE Scales16 block256_scales(const uint8_t *b, const WeightType type) {
    Scales16 s;
    if (type == WEIGHT_Q4_K || type == WEIGHT_Q5_K) { // see k_scale_min: 8 scales and minimums of 6 bits
        uint32_t s0 = load_u32(b + 4), s1 = load_u32(b + 8), s2 = load_u32(b + 12);
        uint32_t scales_lo = s0 & 0x3F3F3F3F, mins_lo = s1 & 0x3F3F3F3F;
        uint32_t scales_hi = (s2 & 0x0F0F0F0F) | ((s0 >> 6) & 0x03030303) << 4;
        uint32_t mins_hi = ((s2 >> 4) & 0x0F0F0F0F) | ((s1 >> 6) & 0x03030303) << 4;
        __m128i scales = _mm_setr_epi32((int)scales_lo, (int)scales_hi, 0, 0);
        __m128i mins = _mm_setr_epi32((int)mins_lo, (int)mins_hi, 0, 0);
        s.scale = _mm512_mul_ps(_mm512_set1_ps(_cvtsh_ss(load_u16(b))), u8_to_ps(_mm_unpacklo_epi8(scales, scales)));
        s.offset = _mm512_mul_ps(_mm512_set1_ps(-_cvtsh_ss(load_u16(b + 2))), u8_to_ps(_mm_unpacklo_epi8(mins, mins)));
    } else if (type == WEIGHT_Q6_K) { // 16 int8 scales
        __m128i scales = _mm_loadu_si128((const __m128i *)(b + 192));
        s.scale = _mm512_mul_ps(_mm512_set1_ps(_cvtsh_ss(load_u16(b + 208))), i8_to_ps(scales));
        s.offset = _mm512_mul_ps(_mm512_set1_ps(-32.0f), s.scale);
    } else if (type == WEIGHT_Q3_K) { // see decode_block: 16 scales of 6 bits, stored + 32
        uint32_t s0 = load_u32(b + 96), s1 = load_u32(b + 100), s2 = load_u32(b + 104);
        __m128i scales = _mm_setr_epi32((int)((s0 & 0x0F0F0F0F) | (s2 & 0x03030303) << 4),
                                        (int)((s1 & 0x0F0F0F0F) | ((s2 >> 2) & 0x03030303) << 4),
                                        (int)(((s0 >> 4) & 0x0F0F0F0F) | ((s2 >> 4) & 0x03030303) << 4),
                                        (int)(((s1 >> 4) & 0x0F0F0F0F) | ((s2 >> 6) & 0x03030303) << 4));
        scales = _mm_sub_epi8(scales, _mm_set1_epi8(32));
        s.scale = _mm512_mul_ps(_mm512_set1_ps(_cvtsh_ss(load_u16(b + 108))), i8_to_ps(scales));
        s.offset = _mm512_mul_ps(_mm512_set1_ps(-4.0f), s.scale);
    } else if (type == WEIGHT_Q2_K) { // 16 bytes: scale in the low nibble, minimum in the high
        __m128i bytes = _mm_loadu_si128((const __m128i *)b), low4 = _mm_set1_epi8(15);
        s.scale = _mm512_mul_ps(_mm512_set1_ps(_cvtsh_ss(load_u16(b + 80))), u8_to_ps(_mm_and_si128(bytes, low4)));
        s.offset = _mm512_mul_ps(_mm512_set1_ps(-_cvtsh_ss(load_u16(b + 82))),
                                 u8_to_ps(_mm_and_si128(_mm_srli_epi16(bytes, 4), low4)));
    } else { // IQ4_XS: 8 scales of 6 bits, stored + 32: nibbles of bytes 4..7 and bit pairs of bytes 2..3
        uint32_t nibbles = load_u32(b + 4);
        __m128i lo = _mm_cvtsi32_si128((int)(nibbles & 0x0F0F0F0F));
        __m128i hi = _mm_cvtsi32_si128((int)((nibbles >> 4) & 0x0F0F0F0F));
        __m128i tops = _mm_cvtsi64_si128((long long)(_pdep_u64(load_u16(b + 2), 0x0303030303030303ull) << 4));
        __m128i scales = _mm_sub_epi8(_mm_or_si128(_mm_unpacklo_epi8(lo, hi), tops), _mm_set1_epi8(32));
        s.scale = _mm512_mul_ps(_mm512_set1_ps(_cvtsh_ss(load_u16(b))), i8_to_ps(_mm_unpacklo_epi8(scales, scales)));
        s.offset = _mm512_mul_ps(_mm512_set1_ps(-128.0f), s.scale);
    }
    return s;
}

// Q4_K, Q5_K and IQ4_XS have a scale per 32 values, as the input has: their 8
// scales times the input's in lanes 0..7, and their 8 offsets (bias
// included) times the input's in lanes 8..15, decoded in SIMD registers.
AVX512 static INLINE __m512 block256_scales32(const uint8_t *b, const float *x_scale, const WeightType type) {
    __m128i small; // the 8 scales and 8 minimums (or 8 scales twice) as bytes
    __m512 factor; // what multiplies them: d in lanes 0..7 and -dmin in lanes 8..15
    if (type == WEIGHT_Q4_K || type == WEIGHT_Q5_K) { // see k_scale_min
        __m128i v = _mm_loadu_si128((const __m128i *)(b + 4)); // 12 bytes, and 4 of the values after them
        __m128i low = _mm_or_si128(_mm_shuffle_epi8(v, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, -1, -1, -1, -1)),
                                   _mm_shuffle_epi8(_mm_srli_epi16(v, 4), _mm_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, -1,
                                                                                        -1, -1, -1, 8, 9, 10, 11)));
        low = _mm_and_si128(low, _mm_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 15, 15, 15, 15));
        __m128i top = _mm_shuffle_epi8(v, _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7));
        small = _mm_or_si128(low, _mm_srli_epi16(_mm_and_si128(top, _mm_set1_epi8((char)0xC0)), 2));
        __m128 d_dmin = _mm_cvtph_ps(_mm_cvtsi32_si128((int)load_u32(b)));
        const __m512i spread = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
        factor = _mm512_mul_ps(_mm512_permutexvar_ps(spread, _mm512_castps128_ps512(d_dmin)),
                               _mm512_setr_ps(1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1, -1));
    } else { // IQ4_XS: 8 scales of 6 bits, stored + 32; the offsets are -128 times them (the bias of the levels)
        uint32_t nibbles = load_u32(b + 4);
        __m128i lo = _mm_cvtsi32_si128((int)(nibbles & 0x0F0F0F0F));
        __m128i hi = _mm_cvtsi32_si128((int)((nibbles >> 4) & 0x0F0F0F0F));
        __m128i tops = _mm_cvtsi64_si128((long long)(_pdep_u64(load_u16(b + 2), 0x0303030303030303ull) << 4));
        __m128i scales = _mm_sub_epi8(_mm_or_si128(_mm_unpacklo_epi8(lo, hi), tops), _mm_set1_epi8(32));
        small = _mm_unpacklo_epi64(scales, scales);
        float d = _cvtsh_ss(load_u16(b));
        factor = _mm512_setr_ps(d, d, d, d, d, d, d, d, -128 * d, -128 * d, -128 * d, -128 * d, -128 * d, -128 * d,
                                -128 * d, -128 * d);
    }
    __m512 values = type == WEIGHT_IQ4_XS ? i8_to_ps(small) : u8_to_ps(small);
    __m512 xs = _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_castps_pd(_mm256_loadu_ps(x_scale)))); // twice
    return _mm512_mul_ps(_mm512_mul_ps(values, factor), xs);
}

// Values 64 step..64 step + 63 of a block of 256, as unsigned bytes u, in order.
AVX512 static INLINE __m512i block256_values(const uint8_t *b, int step, const WeightType type) {
    const __m512i low4 = _mm512_set1_epi8(15), low2 = _mm512_set1_epi8(3);
    if (type == WEIGHT_Q4_K || type == WEIGHT_Q5_K) { // 32 bytes: values 0..31 low nibbles, 32..63 high
        __m256i bytes = _mm256_loadu_si256((const __m256i *)(b + (type == WEIGHT_Q5_K ? 48 : 16) + 32 * step));
        __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(bytes), _mm256_srli_epi16(bytes, 4), 1);
        v = _mm512_and_si512(v, low4);
        if (type == WEIGHT_Q5_K) { // fifth bits: bit 2 step of byte l for value l, bit 2 step + 1 for 32 + l
            __m256i high = _mm256_loadu_si256((const __m256i *)(b + 16));
            __m512i h = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_srli_epi16(high, 2 * step)),
                                           _mm256_srli_epi16(high, 2 * step + 1), 1);
            v = _mm512_or_si512(v, _mm512_slli_epi16(_mm512_and_si512(h, _mm512_set1_epi8(1)), 4));
        }
        return v;
    }
    if (type == WEIGHT_Q6_K) { // half step / 2: values 32 i + l from the nibbles and bit pairs of decode_block
        int h = step / 2, upper = step % 2;
        __m512i low = _mm512_loadu_si512(b + 64 * h); // ql[l] (values 0..31), ql[32 + l] (32..63)
        low = _mm512_and_si512(upper ? _mm512_srli_epi16(low, 4) : low, low4);
        __m256i qh = _mm256_loadu_si256((const __m256i *)(b + 128 + 32 * h));
        __m512i top = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_srli_epi16(qh, 4 * upper)),
                                         _mm256_srli_epi16(qh, 4 * upper + 2), 1);
        return _mm512_or_si512(low, _mm512_slli_epi16(_mm512_and_si512(top, low2), 4));
    }
    if (type == WEIGHT_Q2_K || type == WEIGHT_Q3_K) { // bit pairs 2 i of 32 bytes per 128 values
        int h = step / 2, i = 2 * (step % 2);
        __m256i qs = _mm256_loadu_si256((const __m256i *)(b + (type == WEIGHT_Q3_K ? 32 : 16) + 32 * h));
        __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_srli_epi16(qs, 2 * i)),
                                       _mm256_srli_epi16(qs, 2 * i + 2), 1);
        v = _mm512_and_si512(v, low2);
        if (type == WEIGHT_Q3_K) { // + 4 where the high bit (bit 4 h + i of byte l) is set
            __m256i high = _mm256_loadu_si256((const __m256i *)b);
            __mmask64 set = (__mmask64)_mm256_test_epi8_mask(high, _mm256_set1_epi8((char)(1 << (4 * h + i)))) |
                            (__mmask64)_mm256_test_epi8_mask(high, _mm256_set1_epi8((char)(1 << (4 * h + i + 1)))) << 32;
            v = _mm512_mask_add_epi8(v, set, v, _mm512_set1_epi8(4));
        }
        return v;
    }
    // IQ4_XS: two sub-blocks of 32, 16 bytes each: low nibbles (values 0..15), high (16..31); levels + 128
    __m256i bytes = _mm256_loadu_si256((const __m256i *)(b + 8 + 32 * step));
    __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(bytes), _mm256_srli_epi16(bytes, 4), 1);
    v = _mm512_and_si512(v, low4);
    v = _mm512_shuffle_i64x2(v, v, _MM_SHUFFLE(3, 1, 2, 0));
    __m128i levels = _mm_xor_si128(_mm_loadu_si128((const __m128i *)iq4_levels), _mm_set1_epi8((char)0x80));
    return _mm512_shuffle_epi8(_mm512_broadcast_i32x4(levels), v);
}

// The bias of each block type's unsigned bytes: q + bias >= 0.
static int block_bias(WeightType type) {
    switch (type) {
    case WEIGHT_Q8_0: case WEIGHT_IQ4_NL: case WEIGHT_IQ4_XS: return 128;
    case WEIGHT_Q4_0: return 8;
    case WEIGHT_Q5_0: return 16;
    case WEIGHT_Q3_K: return 4;
    case WEIGHT_Q6_K: return 32;
    default: return 0;
    }
}

// Values of two blocks of 32, as unsigned bytes q + bias (see block_bias), in order.
AVX512 static INLINE __m512i block32_pair_values(const uint8_t *b, const WeightType type) {
    size_t bytes = block_bytes(type);
    if (type == WEIGHT_Q8_0) {
        __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(b + 2))),
                                       _mm256_loadu_si256((const __m256i *)(b + bytes + 2)), 1);
        return _mm512_xor_si512(v, _mm512_set1_epi8((char)0x80)); // + 128
    }
    int at = type == WEIGHT_Q4_1 ? 4 : type == WEIGHT_Q5_0 ? 6 : type == WEIGHT_Q5_1 ? 8 : 2; // the nibbles
    __m256i two = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)(b + bytes + at)), _mm_loadu_si128((const __m128i *)(b + at)));
    __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(two), _mm256_srli_epi16(two, 4), 1);
    v = _mm512_and_si512(v, _mm512_set1_epi8(15)); // lows of both blocks, highs of both
    v = _mm512_shuffle_i64x2(v, v, _MM_SHUFFLE(3, 1, 2, 0)); // block 0's lows, its highs, block 1's lows, its highs
    if (type == WEIGHT_IQ4_NL) {
        __m128i levels = _mm_xor_si128(_mm_loadu_si128((const __m128i *)iq4_levels), _mm_set1_epi8((char)0x80));
        return _mm512_shuffle_epi8(_mm512_broadcast_i32x4(levels), v); // levels + 128
    }
    if (type == WEIGHT_Q5_0 || type == WEIGHT_Q5_1) { // the fifth bits: one per value, in order
        __mmask64 fifth = (__mmask64)load_u32(b + at - 4) | (__mmask64)load_u32(b + bytes + at - 4) << 32;
        v = _mm512_mask_or_epi32(v, 0xFFFF, v, _mm512_maskz_mov_epi8(fifth, _mm512_set1_epi8(16)));
    }
    return v;
}

// Prompt blocks for the other block types: the int8 panels again (see
// int8_rows_panel_avx512), holding each row's values as unsigned bytes u (the
// bias as in block256_values), with a scale and an offset per run of R
// values: R = 32 where a type's scales cover 32 values, 16 for Q2_K, Q3_K and
// Q6_K. A run's sum is then (its integer sum times its scale plus its offset
// times the input's sum) times the input's scale.

// Values 64 step.. of a row of blocks (a step is two blocks of 32, or a
// quarter of a block of 256) as unsigned bytes; the last step of an odd
// number of blocks of 32 holds one.
AVX512 static INLINE __m512i block_step_values(const uint8_t *row, int step, int last_half, const WeightType type) {
    if (weight_types[type].values == 256) return block256_values(row + (size_t)(step / 4) * block_bytes(type), step % 4, type);
    const uint8_t *block = row + (size_t)(2 * step) * block_bytes(type);
    if (!last_half) return block32_pair_values(block, type);
    __m256i bias = _mm256_set1_epi8((char)block_bias(type));
    return _mm512_castsi256_si512(_mm256_add_epi8(block32_values(block, type), bias));
}

// Scales and offsets (bias included) of the blocks of 32 in values j0..j0 +
// len of a row, into scale[block * 16] and offset[block * 16].
AVX512 static INLINE void block32_scales(float *scale, float *offset, const uint8_t *row, int j0, int len,
                                         const WeightType type) {
    for (int j = j0; j < j0 + len; j += 32) {
        const uint8_t *block = row + (size_t)(j / 32) * block_bytes(type);
        float d = _cvtsh_ss(load_u16(block));
        scale[(j - j0) / 32 * 16] = d;
        offset[(j - j0) / 32 * 16] = type == WEIGHT_Q4_1 || type == WEIGHT_Q5_1 ? _cvtsh_ss(load_u16(block + 2)) : -block_bias(type) * d;
    }
}

// A panel of 16 rows (rows from `rows` on: value 0, scale 0, offset 0) for
// values j0..j0 + len, len a multiple of the type's blocks.
AVX512 static void pack_block_panel_avx512(uint8_t *panel, float *panel_scale, float *panel_offset, const uint8_t *w,
                                           size_t row_bytes, int rows, int j0, int len, const WeightType type,
                                           const int R) {
    int values = weight_types[type].values;
    const uint8_t *first_block = w + (size_t)(j0 / values) * block_bytes(type); // (a division: once, not per step)
    size_t chunk_bytes = (size_t)(len / values) * block_bytes(type);
    for (int r = 0; r < rows; r++) // the rows' next stretch, fetched while the tiles work on this one: 16
        for (size_t at = 0; at < chunk_bytes; at += 64) // streams are more than the hardware prefetchers follow
            prefetch(first_block + r * row_bytes, chunk_bytes + at);
    for (int j = 0; j < len; j += 64) {
        int last_half = len - j < 64; // blocks of 32: an odd one at the end
        __m512i v[16];
        for (int r = 0; r < 16; r++)
            v[r] = r < rows ? block_step_values(first_block + r * row_bytes, j / 64, last_half, type) : _mm512_setzero_si512();
        transpose16_store(panel + (size_t)j * 16, v);
    }
    for (int r = 0; r < 16 && values == 32; r++) {
        if (r < rows) {
            block32_scales(panel_scale + r, panel_offset + r, w + r * row_bytes, j0, len, type);
        } else {
            for (int run = 0; run < len / R; run++) panel_scale[run * 16 + r] = panel_offset[run * 16 + r] = 0.0f;
        }
    }
    // Blocks of 256: each block's 16 scales (Scales16) for the 16 rows at once,
    // turned in registers to a vector of 16 rows per run, not copied out a lane at a time.
    for (int b = 0; values == 256 && b < len / 256; b++) {
        __m512i scales[16], offsets[16];
        for (int r = 0; r < 16; r++) {
            Scales16 block = {_mm512_setzero_ps(), _mm512_setzero_ps()};
            if (r < rows) block = block256_scales(w + r * row_bytes + (size_t)(j0 / 256 + b) * block_bytes(type), type);
            scales[r] = _mm512_castps_si512(block.scale), offsets[r] = _mm512_castps_si512(block.offset);
        }
        _Alignas(64) float turned[2][16][16]; // (scale and offset, lane, row)
        transpose16_store(turned[0], scales), transpose16_store(turned[1], offsets);
        for (int k = 0; k < 256 / R; k++) { // run k of R values: lane k R / 16 (Scales16 has a lane per 16)
            _mm512_store_ps(panel_scale + (b * 256 / R + k) * 16, _mm512_load_ps(turned[0][k * R / 16]));
            _mm512_store_ps(panel_offset + (b * 256 / R + k) * 16, _mm512_load_ps(turned[1][k * R / 16]));
        }
    }
}

// TT tokens against P panels (1 or 2, PANEL_ROWS * PANEL_VALUES bytes apart,
// their scales and offsets PANEL_ROWS * PANEL_VALUES / 16 floats apart) of
// `runs` runs of R values: out (TT tokens, 16 P rows) gets the panels' share
// of the sums, added to what is there unless `first`. x, x_scale (per 32) and
// x_sums (per R) start at the panel's first value of the first token. A group
// of 32 values (one input scale) takes its runs' products in float before
// that scale. Where a type's offset is its bias times its scale (block_bias:
// Q6_K's 32, Q3_K's 4, ...), the sums start at -bias times the input's, as
// integers, and offsets cost nothing: the float work per 8 vpdpbusd is then 3
// operations for Q6_K's two runs, not 6. Two panels share each token's 4
// broadcast values: a load per vpdpbusd held the tile to the load ports
// (bench/NOTES.md, fifth session).
AVX512 static INLINE void block_panel_tile_avx512(float *out, size_t out_stride, const __mmask16 *row_mask,
                                                  const uint8_t *panel, const float *w_scale, const float *w_offset,
                                                  const int8_t *x, const float *x_scale, const int32_t *x_sums,
                                                  size_t x_stride, int runs, int first, const int bias, const int R,
                                                  const int P, const int TT) {
    const size_t panel_bytes = PANEL_ROWS * PANEL_VALUES, scales_floats = PANEL_ROWS * (PANEL_VALUES / 16);
    __m512 acc[2][8];
    for (int p = 0; p < P; p++)
        for (int t = 0; t < TT; t++)
            acc[p][t] = first ? _mm512_setzero_ps()
                              : _mm512_maskz_loadu_ps(row_mask[p], out + t * out_stride + PANEL_ROWS * p);
    for (int g = 0; g < runs; g += QBLOCK / R) {
        __m512 group[2][8]; // (P, TT) the group's sums, each run's times its scales, before the input's scale
        for (int p = 0; p < P; p++)
            for (int t = 0; t < TT; t++) group[p][t] = _mm512_setzero_ps(); // (set by the first run: for the compiler)
        for (int run = g; run < g + QBLOCK / R; run++) {
            __m512i isum[2][8];
            for (int t = 0; t < TT; t++) {
                int32_t x_sum = x_sums[t * (x_stride / R) + run];
                isum[0][t] = bias ? _mm512_set1_epi32(-bias * x_sum) : _mm512_setzero_si512();
                if (P == 2) isum[1][t] = isum[0][t];
            }
            const int8_t *xr = x + (size_t)run * R;
            for (int k = 0; k < R; k += 4)
                panels_step_avx512(isum, panel + (size_t)run * R * 16 + k * 16, panel_bytes, xr + k, x_stride, P, TT);
            for (int p = 0; p < P; p++) {
                __m512 ws = _mm512_load_ps(w_scale + p * scales_floats + run * 16);
                __m512 wo = _mm512_load_ps(w_offset + p * scales_floats + run * 16);
                for (int t = 0; t < TT; t++) {
                    __m512 products = _mm512_cvtepi32_ps(isum[p][t]);
                    group[p][t] = run == g ? _mm512_mul_ps(products, ws) : _mm512_fmadd_ps(products, ws, group[p][t]);
                    if (!bias) {
                        __m512 x_sum = _mm512_set1_ps((float)x_sums[t * (x_stride / R) + run]);
                        group[p][t] = _mm512_fmadd_ps(wo, x_sum, group[p][t]);
                    }
                }
            }
        }
        for (int t = 0; t < TT; t++) {
            __m512 scale = _mm512_set1_ps(x_scale[t * (x_stride / QBLOCK) + g * R / QBLOCK]);
            for (int p = 0; p < P; p++) acc[p][t] = _mm512_fmadd_ps(group[p][t], scale, acc[p][t]);
        }
    }
    for (int p = 0; p < P; p++)
        for (int t = 0; t < TT; t++)
            _mm512_mask_storeu_ps(out + t * out_stride + PANEL_ROWS * p, row_mask[p], acc[p][t]);
}

// out (tokens, rows) = x (tokens, n) @ w^T, block panel by block panel: two
// at a time where rows has 32 (two panels share each broadcast of the input),
// in tiles of 4 tokens: the tile holds 3 P TT vectors (sums, a group's sums,
// accumulators), 24 of the 32 registers.
AVX512 static INLINE void block_rows_panel_avx512(float *out, size_t out_stride, const uint8_t *w, size_t row_bytes,
                                                  const int8_t *xq, const float *x_scale, const int32_t *x_sums,
                                                  size_t x_stride, int n, int rows, int tokens, const WeightType type,
                                                  const int R) {
    _Alignas(64) uint8_t panel[2 * PANEL_ROWS * PANEL_VALUES];
    _Alignas(64) float panel_scale[2 * PANEL_ROWS * (PANEL_VALUES / 16)];
    _Alignas(64) float panel_offset[2 * PANEL_ROWS * (PANEL_VALUES / 16)];
    const size_t scales_floats = PANEL_ROWS * (PANEL_VALUES / 16); // a panel's, of scales and of offsets
    for (int r0 = 0; r0 < rows; r0 += 2 * PANEL_ROWS) {
        int nr = rows - r0 < 2 * PANEL_ROWS ? rows - r0 : 2 * PANEL_ROWS, panels = nr > PANEL_ROWS ? 2 : 1;
        __mmask16 row_mask[2] = {chunk_mask16(nr), chunk_mask16(nr - PANEL_ROWS)};
        for (int j0 = 0; j0 < n; j0 += PANEL_VALUES) {
            int len = n - j0 < PANEL_VALUES ? n - j0 : PANEL_VALUES;
            for (int p = 0; p < panels; p++) {
                int panel_rows = nr - p * PANEL_ROWS < PANEL_ROWS ? nr - p * PANEL_ROWS : PANEL_ROWS;
                pack_block_panel_avx512(panel + p * PANEL_ROWS * PANEL_VALUES, panel_scale + p * scales_floats,
                                        panel_offset + p * scales_floats, w + (r0 + p * PANEL_ROWS) * row_bytes,
                                        row_bytes, panel_rows, j0, len, type, R);
            }
            int first = j0 == 0;
#define BLOCK_TILE(P, t, TT)                                                                                           \
    block_panel_tile_avx512(out + r0 + (t) * out_stride, out_stride, row_mask, panel, panel_scale, panel_offset,       \
                            xq + j0 + (t) * x_stride, x_scale + j0 / QBLOCK + (t) * (x_stride / QBLOCK),               \
                            x_sums + j0 / R + (t) * (x_stride / R), x_stride, len / R, first, block_bias(type), R, P, TT)
#define ONE_PANEL(t, TT) BLOCK_TILE(1, t, TT)
#define TWO_PANELS(t, TT) BLOCK_TILE(2, t, TT)
            if (panels == 2) FOR_EACH_TOKEN_TILE(tokens, 4, TWO_PANELS);
            else FOR_EACH_TOKEN_TILE(tokens, 8, ONE_PANEL);
#undef BLOCK_TILE
#undef ONE_PANEL
#undef TWO_PANELS
        }
    }
}

// A token's decode through Q4_0 or IQ4_NL (18-byte blocks: a float16 scale,
// then 16 bytes of nibbles, value j low and j + 16 high in byte j): eight
// blocks a step, taken in the order of the input's q_runs32 (see
// interleave_runs; a run of 32 is a block here), so that lanes 2 k and 2 k + 1
// of the integer sums belong to block k through the four vpdpbusd of the step
// and its eight scales are applied by one multiply. Values are unsigned bytes
// q + bias (8 for Q4_0's nibbles, 128 for IQ4_NL's levels); the sums start at
// -bias times the input's block sums, which takes the bias out again. Two
// blocks at a time with their scales taken one by one, Q4_0 decode ran at
// about half this speed (bench/NOTES.md).

// Words of the eight blocks' 144 bytes: block 2 k's nibbles (word 18 k + 1 of
// bytes 0..127) land in 128-bit lane k; block 2 k + 1's sit one word further
// on in bytes 16..143. Then each block's float16 scale, twice (word 9 k).
static const int16_t runs8_nibbles_at[32] = {1,  2,  3,  4,  5,  6,  7,  8,  19, 20, 21, 22, 23, 24, 25, 26,
                                             37, 38, 39, 40, 41, 42, 43, 44, 55, 56, 57, 58, 59, 60, 61, 62};
static const int16_t runs8_scales_at[32] = {0, 0, 9, 9, 18, 18, 27, 27, 36, 36, 45, 45, 54, 54, 63, 63};

AVX512 static INLINE float block32_runs_row_avx512(const uint8_t *row, const int8_t *q_runs32, const float *x_scale,
                                                   const int32_t *x_sum, int n, const WeightType type) {
    const __m512i dup = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m512i even_at = _mm512_loadu_si512(runs8_nibbles_at), scales_at = _mm512_loadu_si512(runs8_scales_at);
    const __m512i odd_at = _mm512_add_epi16(even_at, _mm512_set1_epi16(1)), low4 = _mm512_set1_epi8(15);
    const __m512i levels = _mm512_broadcast_i32x4(_mm_xor_si128(_mm_loadu_si128((const __m128i *)iq4_levels),
                                                                _mm_set1_epi8((char)0x80))); // levels + 128
    const int bias_shift = type == WEIGHT_Q4_0 ? 3 : 7; // bias 8 or 128
    __m512 acc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int g = 0; g < n / 256; g++) {
        const uint8_t *b = row + (size_t)g * 144;
        prefetch(b, PREFETCH_BYTES), prefetch(b, PREFETCH_BYTES + 64), prefetch(b, PREFETCH_BYTES + 128);
        __m512i head = _mm512_loadu_si512(b), tail = _mm512_loadu_si512(b + 64);
        __m512i even = _mm512_permutex2var_epi16(head, even_at, tail);
        __m512i odd = _mm512_permutex2var_epi16(_mm512_loadu_si512(b + 16), odd_at, _mm512_loadu_si512(b + 80));
        __m512i first = _mm512_unpacklo_epi64(even, odd), second = _mm512_unpackhi_epi64(even, odd); // bytes 0..7, 8..15
        __m512i u[4] = {_mm512_and_si512(first, low4), _mm512_and_si512(second, low4),
                        _mm512_and_si512(_mm512_srli_epi16(first, 4), low4),
                        _mm512_and_si512(_mm512_srli_epi16(second, 4), low4)}; // values 0..7, 8..15, 16..23, 24..31
        __m512i isum = _mm512_cvtepu32_epi64(_mm256_loadu_si256((const __m256i *)(x_sum + 8 * g))); // block k's sum in lane 2 k
        isum = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(isum, bias_shift));
        for (int step = 0; step < 4; step++) {
            __m512i v = type == WEIGHT_IQ4_NL ? _mm512_shuffle_epi8(levels, u[step]) : u[step];
            isum = _mm512_dpbusd_epi32(isum, v, _mm512_loadu_si512(q_runs32 + 256 * g + 64 * step));
        }
        __m512 scale = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutex2var_epi16(head, scales_at, tail)));
        __m512 xs = _mm512_permutexvar_ps(dup, _mm512_castps256_ps512(_mm256_loadu_ps(x_scale + 8 * g)));
        acc[g % 2] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(scale, xs), acc[g % 2]);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]));
}

// Blocks b0..blocks of a row of blocks of 32 by a token's input: two blocks
// a step, signed, the minimums of Q4_1 and Q5_1 times the input's sums.
AVX512 static INLINE float block32_pairs_row_avx512(const uint8_t *row, const int8_t *x, const float *x_scale,
                                                    const int32_t *x_sum, int b0, int blocks, const WeightType type) {
    size_t bytes = block_bytes(type);
    int has_min = type == WEIGHT_Q4_1 || type == WEIGHT_Q5_1;
    __m512 acc = _mm512_setzero_ps();
    float mins = 0.0f;
    for (int b = b0; b < blocks; b += 2) {
        const uint8_t *block = row + b * bytes;
        int two = b + 1 < blocks;
        __m256i hi = two ? block32_values(block + bytes, type) : _mm256_setzero_si256();
        __m512i wv = _mm512_inserti64x4(_mm512_castsi256_si512(block32_values(block, type)), hi, 1);
        __m512i xv = _mm512_maskz_loadu_epi8(two ? ~(__mmask64)0 : 0xFFFFFFFFull, x + b * QBLOCK);
        __m512i isum = dot_i8_avx512(_mm512_setzero_si512(), wv, xv);
        __m512 scales = two_group_scales(_cvtsh_ss(load_u16(block)) * x_scale[b],
                                         two ? _cvtsh_ss(load_u16(block + bytes)) * x_scale[b + 1] : 0.0f);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), scales, acc);
        if (has_min) {
            mins += _cvtsh_ss(load_u16(block + 2)) * x_scale[b] * x_sum[b];
            if (two) mins += _cvtsh_ss(load_u16(block + bytes + 2)) * x_scale[b + 1] * x_sum[b + 1];
        }
    }
    return _mm512_reduce_add_ps(acc) + mins;
}

// Blocks of 32 (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL): Q8_0 and Q4_0 prompts
// through the int8 panels, the others through the block panels; a token or a
// few a row at a time: Q4_0 and IQ4_NL eight blocks a step
// (block32_runs_row_avx512) as far as the input has whole blocks of 256, the
// rest two blocks a step. type is a constant at each call.
AVX512 static INLINE void block32_rows_avx512(float *out, size_t out_stride, const uint8_t *w, size_t row_bytes,
                                              const int8_t *xq, const int8_t *q_runs32, const float *x_scale,
                                              const int32_t *x_sum, size_t x_stride, int n, int rows, int tokens,
                                              const WeightType type) {
    size_t bytes = block_bytes(type);
    if (tokens >= PANEL_MIN_TOKENS && (type == WEIGHT_Q8_0 || type == WEIGHT_Q4_0)) {
        Int8Rows blocks = {type, w, row_bytes, NULL, 0, QBLOCK, bytes};
        int8_rows_panel_avx512(out, out_stride, &blocks, xq, x_scale, x_sum, x_stride, n, rows, tokens);
        return;
    }
    if (tokens >= PANEL_MIN_TOKENS) {
        block_rows_panel_avx512(out, out_stride, w, row_bytes, xq, x_scale, x_sum, x_stride, n, rows, tokens, type, 32);
        return;
    }
    int by8 = q_runs32 && (type == WEIGHT_Q4_0 || type == WEIGHT_IQ4_NL) ? n / 256 * 256 : 0; // values taken 8 blocks a step
    for (int t = 0; t < tokens; t++)
        for (int r = 0; r < rows; r++) {
            const float *x_scale_t = x_scale + t * (x_stride / QBLOCK);
            const int32_t *x_sum_t = x_sum + t * (x_stride / QBLOCK);
            const uint8_t *row = w + r * row_bytes;
            float sum = by8 ? block32_runs_row_avx512(row, q_runs32 + t * x_stride, x_scale_t, x_sum_t, by8, type) : 0.0f;
            if (by8 < n)
                sum += block32_pairs_row_avx512(row, xq + t * x_stride, x_scale_t, x_sum_t, by8 / QBLOCK, n / QBLOCK, type);
            out[t * out_stride + r] = sum;
        }
}

// A token or a few: a block of 256 at a time, its values taken in the order
// of the input's q_runs32 or q_runs16 (see interleave_runs), so that each lane
// of the vpdpbusd sums belongs to one run all through the block and the four
// steps of 64 values add into the same integer sums: one conversion and one
// multiply by the runs' scales per block, not one per step.

// Step s (of 4) of a block of runs of 32: 8 values of each of its 8 runs, the
// bias included (see block256_values): byte 8 k + i is value 8 s + i of run k.
AVX512 static INLINE __m512i runs32_values(const uint8_t *b, int s, const WeightType type) {
    const __m512i low4 = _mm512_set1_epi8(15);
    if (type == WEIGHT_Q4_K || type == WEIGHT_Q5_K) { // run k: the low (k even) or high nibbles of chunk k / 2
        const uint8_t *qs = b + (type == WEIGHT_Q5_K ? 48 : 16);
        __m512i at = _mm512_setr_epi64(s, s, 4 + s, 4 + s, 8 + s, 8 + s, 12 + s, 12 + s); // qword 4 c + s of chunk c
        __m512i v = _mm512_permutex2var_epi64(_mm512_loadu_si512(qs), at, _mm512_loadu_si512(qs + 64));
        v = _mm512_and_si512(_mm512_srlv_epi64(v, _mm512_setr_epi64(0, 4, 0, 4, 0, 4, 0, 4)), low4);
        if (type == WEIGHT_Q5_K) { // the fifth bit of value e of run k: bit k of byte e of the 32 at 16
            __m512i high = _mm512_set1_epi64((long long)((uint64_t)read_u32le(b + 16 + 8 * s) | (uint64_t)read_u32le(b + 20 + 8 * s) << 32));
            high = _mm512_and_si512(_mm512_srlv_epi64(high, _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7)), _mm512_set1_epi8(1));
            v = _mm512_or_si512(v, _mm512_slli_epi64(high, 4));
        }
        return v;
    }
    // IQ4_XS: run k is 16 bytes at 8 + 16 k, values 0..15 in their low nibbles, 16..31 in their high
    __m512i at = _mm512_setr_epi64(s % 2, 2 + s % 2, 4 + s % 2, 6 + s % 2, 8 + s % 2, 10 + s % 2, 12 + s % 2, 14 + s % 2);
    __m512i v = _mm512_permutex2var_epi64(_mm512_loadu_si512(b + 8), at, _mm512_loadu_si512(b + 72));
    v = _mm512_and_si512(s >= 2 ? _mm512_srli_epi16(v, 4) : v, low4);
    __m128i levels = _mm_xor_si128(_mm_loadu_si128((const __m128i *)iq4_levels), _mm_set1_epi8((char)0x80));
    return _mm512_shuffle_epi8(_mm512_broadcast_i32x4(levels), v); // levels + 128
}

// Step s of a block of runs of 16 (Q2_K, Q3_K; Q6_K has q6_k_row_avx512): 4 values of each of its 16 runs
// (see decode_block for where a value's bits are): byte 4 k + i is value 4 s + i of run k.
AVX512 static INLINE __m512i runs16_values(const uint8_t *b, int s, const WeightType type) {
    const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), step = _mm512_set1_epi32(s);
    const __m512i half = _mm512_srli_epi32(lanes, 3), odd = _mm512_and_si512(lanes, _mm512_set1_epi32(1));
    const __m512i quarter = _mm512_srli_epi32(_mm512_and_si512(lanes, _mm512_set1_epi32(7)), 1); // i: 32 values of a half
    // Q2_K and Q3_K: bit pairs i of dword 8 h + 4 (k & 1) + s of the 64 bytes of values
    __m512i at = _mm512_add_epi32(_mm512_add_epi32(_mm512_slli_epi32(half, 3), _mm512_slli_epi32(odd, 2)), step);
    __m512i v = _mm512_permutexvar_epi32(at, _mm512_loadu_si512(b + (type == WEIGHT_Q3_K ? 32 : 16)));
    v = _mm512_and_si512(_mm512_srlv_epi32(v, _mm512_slli_epi32(quarter, 1)), _mm512_set1_epi8(3));
    if (type == WEIGHT_Q3_K) { // + 4 where the high bit (bit 4 h + i of dword 4 (k & 1) + s of the 32 at 0) is set
        __m512i high = _mm512_permutexvar_epi32(_mm512_add_epi32(_mm512_slli_epi32(odd, 2), step),
                                                _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)b)));
        high = _mm512_and_si512(_mm512_srlv_epi32(high, _mm512_add_epi32(_mm512_slli_epi32(half, 2), quarter)), _mm512_set1_epi8(1));
        v = _mm512_or_si512(v, _mm512_slli_epi32(high, 2));
    }
    return v;
}

AVX512 static INLINE float block256_row_avx512(const uint8_t *row, const int8_t *q_runs32, const int8_t *q_runs16,
                                               const float *x_scale, const int32_t *x_sum, const int32_t *x_sum16,
                                               int n, const WeightType type) {
    const __m512i dup = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    int by32 = type == WEIGHT_Q4_K || type == WEIGHT_Q5_K || type == WEIGHT_IQ4_XS;
    const int8_t *x = by32 ? q_runs32 : q_runs16;
    __m512 acc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()}, offsets = _mm512_setzero_ps();
    size_t bytes = block_bytes(type);
    for (int b = 0; b < n / 256; b++) {
        const uint8_t *block = row + b * bytes;
        for (size_t line = 0; line < bytes; line += 64) prefetch(block, PREFETCH_BYTES + line);
        __m512 scale;
        if (by32) { // lanes 0..7: the runs' scales, 8..15: their offsets (see block256_scales32)
            scale = block256_scales32(block, x_scale + 8 * b, type);
            offsets = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(0xFF00, x_sum + 8 * b - 8)), offsets);
            scale = _mm512_permutexvar_ps(dup, scale); // run k in lanes 2 k and 2 k + 1
        } else {
            Scales16 s = block256_scales(block, type);
            __m512 xs = _mm512_permutexvar_ps(dup, _mm512_castps256_ps512(_mm256_loadu_ps(x_scale + 8 * b)));
            scale = _mm512_mul_ps(s.scale, xs);
            offsets = _mm512_fmadd_ps(_mm512_mul_ps(s.offset, xs), _mm512_cvtepi32_ps(_mm512_loadu_si512(x_sum16 + 16 * b)), offsets);
        }
        __m512i isum = _mm512_setzero_si512();
        for (int step = 0; step < 4; step++) {
            __m512i u = by32 ? runs32_values(block, step, type) : runs16_values(block, step, type);
            isum = _mm512_dpbusd_epi32(isum, u, _mm512_loadu_si512(x + 256 * b + 64 * step));
        }
        acc[b % 2] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), scale, acc[b % 2]);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), offsets));
}

// Q6_K, one row by one token (generating; Q4_K_M's classifier and half its
// attn_v and ffn_down): the values in the block's own order against the
// input's, so each half block's 128 values take a load of nibbles and of bit
// pairs and a few masks, where runs16_values's order would gather every 64
// values with two permutes.
// Lane i of a product holds values 4 i..4 i + 3 of its 64: their run of 16 is
// i / 4 of the 4 there.
AVX512 static INLINE float q6_k_row_avx512(const uint8_t *row, const int8_t *x, const float *x_scale,
                                           const int32_t *x_sum16, int n) {
    const __m512i low4 = _mm512_set1_epi8(15), bits45 = _mm512_set1_epi8(0x30);
    const __m512i dup = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    // qh's bit pairs to bits 4..5: values 0..31 of a half take bits 0..1, 32..63 bits 2..3, 64..95 bits 4..5, 96..127 bits 6..7
    const __m512i up = _mm512_setr_epi64(4, 4, 4, 4, 2, 2, 2, 2), down = _mm512_setr_epi64(0, 0, 0, 0, 2, 2, 2, 2);
    const __m512i run = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3); // lane i's run of 4
    __m512 acc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()}, offsets = _mm512_setzero_ps();
    for (int b = 0; b < n / 256; b++) {
        const uint8_t *block = row + b * block_bytes(WEIGHT_Q6_K);
        for (int line = 0; line < 4; line++) prefetch(block, PREFETCH_BYTES + 64 * line);
        // run k's scale (d, its own, the input's group k / 2) in lane k; its offset, -32 times that, by the input's sums
        __m512 scale = _mm512_mul_ps(_mm512_set1_ps(_cvtsh_ss(load_u16(block + 208))),
                                     i8_to_ps(_mm_loadu_si128((const __m128i *)(block + 192))));
        scale = _mm512_mul_ps(scale, _mm512_permutexvar_ps(dup, _mm512_castps256_ps512(_mm256_loadu_ps(x_scale + 8 * b))));
        offsets = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(_mm512_loadu_si512(x_sum16 + 16 * b)), offsets);
        __m512i qh = _mm512_loadu_si512(block + 128); // each half's 32 bytes, twice over:
        __m512i tops[2] = {_mm512_shuffle_i64x2(qh, qh, 0x44), _mm512_shuffle_i64x2(qh, qh, 0xEE)};
        for (int h = 0; h < 2; h++) {
            __m512i ql = _mm512_loadu_si512(block + 64 * h), top = tops[h];
            __m512i v0 = _mm512_or_si512(_mm512_and_si512(ql, low4), _mm512_and_si512(_mm512_sllv_epi64(top, up), bits45));
            __m512i v1 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), low4),
                                         _mm512_and_si512(_mm512_srlv_epi64(top, down), bits45));
            const int8_t *xh = x + 256 * b + 128 * h;
            __m512i s0 = dpbusd512(_mm512_setzero_si512(), v0, _mm512_loadu_si512(xh));
            __m512i s1 = dpbusd512(_mm512_setzero_si512(), v1, _mm512_loadu_si512(xh + 64));
            acc[0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0), _mm512_permutexvar_ps(_mm512_add_epi32(run, _mm512_set1_epi32(8 * h)), scale), acc[0]);
            acc[1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1), _mm512_permutexvar_ps(_mm512_add_epi32(run, _mm512_set1_epi32(8 * h + 4)), scale), acc[1]);
        }
    }
    return _mm512_reduce_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(-32.0f), offsets, _mm512_add_ps(acc[0], acc[1])));
}

AVX512 static INLINE void block256_rows_avx512(float *out, size_t out_stride, const uint8_t *w, size_t row_bytes,
                                               const Input *in, int rows, const WeightType type) {
    int n = in->n, tokens = in->tokens;
    if (tokens >= PANEL_MIN_TOKENS && (type == WEIGHT_Q2_K || type == WEIGHT_Q3_K || type == WEIGHT_Q6_K)) {
        block_rows_panel_avx512(out, out_stride, w, row_bytes, in->q, in->scale, in->sum16, n, n, rows, tokens, type, 16);
        return;
    }
    if (tokens >= PANEL_MIN_TOKENS) {
        block_rows_panel_avx512(out, out_stride, w, row_bytes, in->q, in->scale, in->sum, n, n, rows, tokens, type, 32);
        return;
    }
    for (int t = 0; t < tokens; t++)
        for (int r = 0; r < rows; r++)
            if (type == WEIGHT_Q6_K)
                out[t * out_stride + r] = q6_k_row_avx512(w + r * row_bytes, in->q + t * n, in->scale + t * (n / QBLOCK),
                                                          in->sum16 + t * (n / 16), n);
            else
                out[t * out_stride + r] = block256_row_avx512(w + r * row_bytes, in->q_runs32 + t * n, in->q_runs16 + t * n,
                                                              in->scale + t * (n / QBLOCK), in->sum + t * (n / QBLOCK),
                                                              in->sum16 + t * (n / 16), n, type);
}

// Each block type's kernel (see BLOCK_ROWS_PARAMS): rows_avx512_Q8_0 and so on.
#define ROWS32_AVX512(T)                                                                                               \
    AVX512 static void rows_avx512_##T(BLOCK_ROWS_PARAMS) {                                                           \
        (void)type;                                                                                                    \
        block32_rows_avx512(out, out_stride, w, row_bytes, in->q, in->q_runs32, in->scale, in->sum, in->n, in->n,     \
                            rows, in->tokens, WEIGHT_##T);                                                             \
    }
#define ROWS256_AVX512(T)                                                                                              \
    AVX512 static void rows_avx512_##T(BLOCK_ROWS_PARAMS) {                                                           \
        (void)type;                                                                                                    \
        block256_rows_avx512(out, out_stride, w, row_bytes, in, rows, WEIGHT_##T);                                     \
    }
ROWS32_AVX512(Q8_0) ROWS32_AVX512(Q4_0) ROWS32_AVX512(Q4_1) ROWS32_AVX512(Q5_0) ROWS32_AVX512(Q5_1)
ROWS32_AVX512(IQ4_NL) ROWS256_AVX512(Q2_K) ROWS256_AVX512(Q3_K) ROWS256_AVX512(Q4_K) ROWS256_AVX512(Q5_K)
ROWS256_AVX512(Q6_K) ROWS256_AVX512(IQ4_XS)

// --- Rows in panels (see "Rows laid out again"): packed_rows_avx512 = packed_rows_scalar
//
// A thread reads its blocks of rows one after the other, so the prefetch runs
// on past a panel's values into the next block's first values and scales:
// the hardware prefetcher picks up each new block's streams only after a few
// waits, which cost generating about a tenth of its speed (bench/NOTES.md).

// TT tokens against groups g0..g1 of P panels of Q8_0 or Q4_0 rows (P = 1,
// or 2 when matmul's block of rows holds two): the int8 panel tile
// (int8_panel_tile_avx512) on the panels as they are in memory, `panel_bytes`
// apart. out (TT tokens, 16 P rows) gets the groups' share of the sums, added
// to what is there unless `first`; x, x_scale and x_sum start at the first
// token's group 0. Two panels share each token's 4 broadcast values and its
// scale, so a tile of 6 tokens by 32 rows does a tenth more products a second
// than 8 tokens by 16 (bench/NOTES.md). The first tile of a stretch of groups
// (`ahead`) fetches the stretch after it, as the next tiles find this one in L1.
AVX512 static INLINE void packed_tile_avx512(float *out, size_t out_stride, const uint8_t *values,
                                             const uint16_t *scales, size_t panel_bytes, const int8_t *x,
                                             const float *x_scale, const int32_t *x_sum, size_t x_stride, int g0,
                                             int g1, int first, int ahead, const WeightType type, const int P,
                                             const int TT) {
    const size_t group_bytes = packed_group_bytes(type), x_groups = x_stride / QBLOCK;
    const size_t values_bytes = (size_t)((const uint8_t *)scales - values); // a panel's, before its scales
    const int bias = type == WEIGHT_Q8_0 ? 128 : 8;
    const __m512i low4 = _mm512_set1_epi8(15);
    __m512 acc[2][8];
    for (int p = 0; p < P; p++)
        for (int t = 0; t < TT; t++)
            acc[p][t] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(out + t * out_stride + PACKED_ROWS * p);
    for (int g = g0; g < g1; g++) {
        const int8_t *xg = x + g * QBLOCK;
        __m512i isum[2][8];
        for (int t = 0; t < TT; t++) {
            isum[0][t] = _mm512_set1_epi32(-bias * x_sum[t * x_groups + g]);
            if (P == 2) isum[1][t] = isum[0][t];
        }
        for (int p = 0; p < P && ahead; p++) { // the values, and their scales, as far ahead (a 16th as long a group)
            size_t panel = p * panel_bytes, at = g * group_bytes + PREFETCH_BYTES;
            if (at >= values_bytes) { // past the values: the next block of rows'
                panel += P * panel_bytes, at -= values_bytes;
                for (size_t line = 0; at < group_bytes && line < 4; line++) prefetch(scales, panel + 64 * line);
            } else prefetch(scales, panel + g * PACKED_ROWS * 2 + PREFETCH_BYTES * PACKED_ROWS * 2 / group_bytes);
            for (size_t line = 0; line < group_bytes; line += 64) prefetch(values, panel + at + line);
        }
        for (int k = 0; k < (type == WEIGHT_Q8_0 ? 8 : 4); k++) {
            __m512i w[2][2]; // each panel's line: Q8_0's values, or Q4_0's low and high nibbles
            for (int p = 0; p < P; p++) {
                __m512i line = _mm512_loadu_si512(values + p * panel_bytes + g * group_bytes + 64 * k);
                w[p][0] = type == WEIGHT_Q8_0 ? line : _mm512_and_si512(line, low4);
                if (type == WEIGHT_Q4_0) w[p][1] = _mm512_and_si512(_mm512_srli_epi16(line, 4), low4);
            }
            for (int t = 0; t < TT; t++)
                for (int h = 0; h < (type == WEIGHT_Q8_0 ? 1 : 2); h++) { // Q4_0's high nibbles: values 16 + 4 k..
                    const int8_t *four = xg + t * x_stride + 16 * h + 4 * k;
                    if (P == 1) {
                        isum[0][t] = dpbusd512_broadcast(isum[0][t], w[0][h], four);
                        continue;
                    }
                    int32_t bytes;
                    memcpy(&bytes, four, 4);
                    __m512i x4 = _mm512_set1_epi32(bytes);
                    for (int p = 0; p < P; p++) isum[p][t] = dpbusd512(isum[p][t], w[p][h], x4);
                }
        }
        for (int p = 0; p < P; p++) {
            const uint16_t *scale = (const uint16_t *)((const uint8_t *)scales + p * panel_bytes) + g * PACKED_ROWS;
            __m512 wscale = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)scale));
            for (int t = 0; t < TT; t++)
                acc[p][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[p][t]),
                                            _mm512_mul_ps(wscale, _mm512_set1_ps(x_scale[t * x_groups + g])), acc[p][t]);
        }
    }
    for (int p = 0; p < P; p++)
        for (int t = 0; t < TT; t++) _mm512_storeu_ps(out + t * out_stride + PACKED_ROWS * p, acc[p][t]);
}

#define PACKED_CHUNK_GROUPS 32 // groups of a panel that each tile of tokens goes through at once: 16 KB of Q8_0

// rows: 16 or 32, one panel or two.
AVX512 static INLINE void packed_rows_avx512(float *out, size_t out_stride, const uint8_t *panel, size_t row_bytes,
                                             const Input *in, int rows, const WeightType type) {
    int groups = in->n / QBLOCK, tokens = in->tokens;
    size_t x_stride = in->n, x_groups = x_stride / QBLOCK, panel_bytes = PACKED_ROWS * row_bytes;
    const uint16_t *scales = (const uint16_t *)(panel + groups * packed_group_bytes(type));
    for (int g0 = 0; g0 < groups; g0 += PACKED_CHUNK_GROUPS) {
        int g1 = groups - g0 < PACKED_CHUNK_GROUPS ? groups : g0 + PACKED_CHUNK_GROUPS;
#define PACKED_TILE(P, t, TT)                                                                                          \
    packed_tile_avx512(out + (t) * out_stride, out_stride, panel, scales, panel_bytes, in->q + (t) * x_stride,         \
                       in->scale + (t) * x_groups, in->sum + (t) * x_groups, x_stride, g0, g1, g0 == 0, (t) == 0, type, \
                       P, TT)
#define ONE_PANEL(t, TT) PACKED_TILE(1, t, TT)
#define TWO_PANELS(t, TT) PACKED_TILE(2, t, TT)
        if (rows == 2 * PACKED_ROWS) FOR_EACH_TOKEN_TILE(tokens, 6, TWO_PANELS);
        else FOR_EACH_TOKEN_TILE(tokens, 8, ONE_PANEL);
#undef PACKED_TILE
#undef ONE_PANEL
#undef TWO_PANELS
    }
}

#define PACKED_CHUNK_BLOCKS 4 // blocks of 256 of a panel that each tile of tokens goes through at once: 8 KB

// Q4_K: runs of 32 values, the low or the high nibbles of 8 lines, each with
// its scale and offset (see k_scale_min), as block_panel_tile_avx512 takes
// them. A block's 6-bit scales and minimums are decoded from the panel's
// words for the 16 rows at once, a byte each (row r's 4 bytes in lane r):
// scales 0..3, 4..7, minimums 0..3, 4..7; then each run's scale and offset.
typedef struct {
    __m512 d, neg_dmin;         // the 16 rows' block scale and minus its scale of minimums
    __m512i scales[2], mins[2]; // their 6-bit run scales 0..3 and 4..7, and minimums, a byte each
} PackedKBlock;

AVX512 static INLINE PackedKBlock packed_q4_k_block(const uint8_t *w) {
    const __m512i low4 = _mm512_set1_epi8(15), low6 = _mm512_set1_epi8(63), bits45 = _mm512_set1_epi8(0x30);
    __m512i s0 = _mm512_loadu_si512(w + 64), s1 = _mm512_loadu_si512(w + 128), s2 = _mm512_loadu_si512(w + 192);
    PackedKBlock b = {
        _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)w)),
        _mm512_sub_ps(_mm512_setzero_ps(), _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + 32)))),
        {_mm512_and_si512(s0, low6), _mm512_or_si512(_mm512_and_si512(s2, low4), _mm512_and_si512(_mm512_srli_epi16(s0, 2), bits45))},
        {_mm512_and_si512(s1, low6), _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(s2, 4), low4), _mm512_and_si512(_mm512_srli_epi16(s1, 2), bits45))}};
    return b;
}

// Run k's scale and offset, from its block's.
AVX512 static INLINE void packed_q4_k_run(__m512 *scale, __m512 *offset, const PackedKBlock *b, int k) {
    const __m512i byte = _mm512_set1_epi32(0xFF);
    int shift = 8 * (k % 4);
    *scale = _mm512_mul_ps(b->d, _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srli_epi32(b->scales[k / 4], shift), byte)));
    *offset = _mm512_mul_ps(b->neg_dmin, _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srli_epi32(b->mins[k / 4], shift), byte)));
}

// TT tokens against blocks g0..g1 of P panels, `panel_bytes` apart; as
// packed_tile_avx512 otherwise (two panels share each broadcast). The runs'
// scales and offsets are made here from a lone panel's words (`runs` NULL:
// a few tokens), or were made once for the stretch of blocks g0..g1
// (PackedKScales: many tokens, where making them in every tile of tokens
// cost an eighth of the time). A line's two runs have a chain of vpdpbusd
// each, which a token alone (generating) needs to keep the unit busy.
typedef struct {
    _Alignas(64) float scale[2][PACKED_CHUNK_BLOCKS * 8][PACKED_ROWS]; // (panels, runs, rows)
    _Alignas(64) float offset[2][PACKED_CHUNK_BLOCKS * 8][PACKED_ROWS];
} PackedKScales;

AVX512 static INLINE void packed_q4_k_tile_avx512(float *out, size_t out_stride, const uint8_t *values,
                                                  const uint8_t *words, size_t panel_bytes, const PackedKScales *runs,
                                                  const int8_t *x, const float *x_scale, const float *x_scaled_sum,
                                                  size_t x_stride, int g0, int g1, int first, int ahead, const int P,
                                                  const int TT) {
    const size_t x_groups = x_stride / QBLOCK, values_bytes = (size_t)(words - values); // a panel's, before its words
    const __m512i low4 = _mm512_set1_epi8(15);
    __m512 acc[2][6];
    for (int p = 0; p < P; p++)
        for (int t = 0; t < TT; t++)
            acc[p][t] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(out + t * out_stride + PACKED_ROWS * p);
    for (int g = g0; g < g1; g++) {
        const uint8_t *block_words = words + (size_t)g * PACKED_ROWS * 16;
        for (int p = 0; p < P && ahead; p++) { // the values as far ahead, and a lone panel's words (an eighth as long)
            size_t panel = p * panel_bytes, at = (size_t)g * PACKED_ROWS * 128 + PREFETCH_BYTES;
            if (at >= values_bytes) { // past the values: the next block of rows'
                panel += P * panel_bytes, at -= values_bytes;
                for (size_t line = 0; !runs && at < PACKED_ROWS * 128 && line < 8; line++) prefetch(words, panel + 64 * line);
            } else for (size_t line = 0; !runs && line < PACKED_ROWS * 16; line += 64) prefetch(block_words, PREFETCH_BYTES / 8 + line);
            for (size_t line = 0; line < PACKED_ROWS * 128; line += 64) prefetch(values, panel + at + line);
        }
        PackedKBlock block; // a lone panel's, where runs is NULL
        if (!runs) block = packed_q4_k_block(block_words);
        for (int c = 0; c < 4; c++) { // lines 8 c..8 c + 7: runs 2 c (low nibbles) and 2 c + 1 (high)
            const int8_t *xc = x + g * 256 + 64 * c;
            __m512i isum[2][2][6]; // (P, low and high nibbles, TT)
            for (int p = 0; p < P; p++)
                for (int t = 0; t < TT; t++) isum[p][0][t] = isum[p][1][t] = _mm512_setzero_si512();
            for (int m = 0; m < 8; m++) {
                __m512i lo[2], hi[2];
                for (int p = 0; p < P; p++) {
                    __m512i line = _mm512_loadu_si512(values + p * panel_bytes + ((size_t)g * PACKED_ROWS * 2 + 8 * c + m) * 64);
                    lo[p] = _mm512_and_si512(line, low4), hi[p] = _mm512_and_si512(_mm512_srli_epi16(line, 4), low4);
                }
                for (int t = 0; t < TT; t++) {
                    const int8_t *four = xc + t * x_stride + 4 * m; // and 32 on: the high nibbles' values
                    if (P == 1) {
                        isum[0][0][t] = dpbusd512_broadcast(isum[0][0][t], lo[0], four);
                        isum[0][1][t] = dpbusd512_broadcast(isum[0][1][t], hi[0], four + 32);
                        continue;
                    }
                    int32_t bytes_lo, bytes_hi;
                    memcpy(&bytes_lo, four, 4), memcpy(&bytes_hi, four + 32, 4);
                    __m512i x_lo = _mm512_set1_epi32(bytes_lo), x_hi = _mm512_set1_epi32(bytes_hi);
                    for (int p = 0; p < P; p++) {
                        isum[p][0][t] = dpbusd512(isum[p][0][t], lo[p], x_lo);
                        isum[p][1][t] = dpbusd512(isum[p][1][t], hi[p], x_hi);
                    }
                }
            }
            for (int h = 0; h < 2; h++) {
                int k = 2 * c + h, group = g * 8 + k;
                for (int p = 0; p < P; p++) {
                    __m512 scale, offset;
                    if (runs) {
                        scale = _mm512_load_ps(runs->scale[p][(g - g0) * 8 + k]);
                        offset = _mm512_load_ps(runs->offset[p][(g - g0) * 8 + k]);
                    } else {
                        packed_q4_k_run(&scale, &offset, &block, k);
                    }
                    for (int t = 0; t < TT; t++) { // the input's scale and scaled sum broadcast from memory, at no cost
                        __m512 both = _mm512_mul_ps(scale, _mm512_set1_ps(x_scale[t * x_groups + group]));
                        acc[p][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[p][h][t]), both, acc[p][t]);
                        acc[p][t] = _mm512_fmadd_ps(offset, _mm512_set1_ps(x_scaled_sum[t * x_groups + group]), acc[p][t]);
                    }
                }
            }
        }
    }
    for (int p = 0; p < P; p++)
        for (int t = 0; t < TT; t++) _mm512_storeu_ps(out + t * out_stride + PACKED_ROWS * p, acc[p][t]);
}

// Tokens from which the runs' scales are made once per stretch of blocks and
// two panels go together: under it, one panel at a time with its scales made
// in the tile is faster (bench/NOTES.md). Two panels take tiles of 3 tokens:
// with 4 (8 accumulators, 16 sums, 4 lines of nibbles, 2 broadcasts) the
// compiler ran a register short and spilled one inside the loop over lines.
#define PACKED_K_MIN_TOKENS 8

// rows: 16 or 32, one panel or two.
AVX512 static void packed_avx512_Q4_K(BLOCK_ROWS_PARAMS) {
    (void)type;
    int groups = in->n / 256, tokens = in->tokens, panels = rows / PACKED_ROWS;
    size_t x_stride = in->n, x_groups = x_stride / QBLOCK, panel_bytes = PACKED_ROWS * row_bytes;
    const uint8_t *words = w + (size_t)groups * PACKED_ROWS * 128;
    PackedKScales runs;
#define PACKED_K_TILE(P, p, runs, t, TT)                                                                               \
    packed_q4_k_tile_avx512(out + (t) * out_stride + PACKED_ROWS * (p), out_stride, w + (p) * panel_bytes,             \
                            words + (p) * panel_bytes, panel_bytes, runs, in->q + (t) * x_stride,                     \
                            in->scale + (t) * x_groups, in->scaled_sum + (t) * x_groups, x_stride, g0, g1, g0 == 0,   \
                            (t) == 0, P, TT)
#define TWO_PANELS(t, TT) PACKED_K_TILE(2, 0, &runs, t, TT)
#define LONE_PANEL(t, TT) PACKED_K_TILE(1, 0, &runs, t, TT)
#define PANEL_P(t, TT) PACKED_K_TILE(1, p, NULL, t, TT)
    for (int p = 0; p < panels && tokens < PACKED_K_MIN_TOKENS; p++)
        for (int g0 = 0; g0 < groups; g0 += PACKED_CHUNK_BLOCKS) {
            int g1 = groups - g0 < PACKED_CHUNK_BLOCKS ? groups : g0 + PACKED_CHUNK_BLOCKS;
            FOR_EACH_TOKEN_TILE(tokens, 6, PANEL_P);
        }
    for (int g0 = 0; g0 < groups && tokens >= PACKED_K_MIN_TOKENS; g0 += PACKED_CHUNK_BLOCKS) {
        int g1 = groups - g0 < PACKED_CHUNK_BLOCKS ? groups : g0 + PACKED_CHUNK_BLOCKS;
        for (int p = 0; p < panels; p++)
            for (int g = g0; g < g1; g++) {
                PackedKBlock block = packed_q4_k_block(words + p * panel_bytes + (size_t)g * PACKED_ROWS * 16);
                for (int k = 0; k < 8; k++) {
                    __m512 scale, offset;
                    packed_q4_k_run(&scale, &offset, &block, k);
                    _mm512_store_ps(runs.scale[p][(g - g0) * 8 + k], scale);
                    _mm512_store_ps(runs.offset[p][(g - g0) * 8 + k], offset);
                }
            }
        if (panels == 2) FOR_EACH_TOKEN_TILE(tokens, 3, TWO_PANELS);
        else FOR_EACH_TOKEN_TILE(tokens, 4, LONE_PANEL);
    }
#undef PACKED_K_TILE
#undef TWO_PANELS
#undef LONE_PANEL
#undef PANEL_P
}

#define PACKED_AVX512(T)                                                                                               \
    AVX512 static void packed_avx512_##T(BLOCK_ROWS_PARAMS) {                                                         \
        (void)type;                                                                                                    \
        packed_rows_avx512(out, out_stride, w, row_bytes, in, rows, WEIGHT_##T);                                      \
    }
PACKED_AVX512(Q8_0) PACKED_AVX512(Q4_0)

// --- Attention's weighted sum: weighted_rows_avx512 = weighted_rows_scalar,
// weighted_f16_rows_avx512 = weighted_f16_rows_scalar

// K chunks of 16 of each row's values (the `left` ones of the pass), float32 or (f16) float16 widened by
// vcvtph2ps. K is 8 (128 values: a head of 128 in one pass over the rows) or 4, so that a head of 64
// loads and adds no empty chunks; the rows are summed in two sets, even and odd, so that 4 chunks
// still keep 8 additions in flight. The rows WEIGHTED_AHEAD on are fetched while these are added:
// left to the hardware prefetchers, a 7B's attention at 2,300 positions took 1.4 to 1.5 times as long (bench/NOTES.md).
#define WEIGHTED_AHEAD 16
AVX512 static INLINE void weighted_chunks_avx512(float *out, const float *a, const void *v, size_t v_stride,
                                                 int left, int rows, const int f16, const int K) {
    const size_t size = f16 ? 2 : 4;
    __mmask16 m[8];
    __m512 even[8], odd[8];
    for (int k = 0; k < K; k++) m[k] = chunk_mask16(left - 16 * k), even[k] = odd[k] = _mm512_setzero_ps();
#define ROW_CHUNK(r, k)                                                                                          \
    (f16 ? _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m[k], (const uint16_t *)v + (size_t)(r) * v_stride + 16 * (k))) \
         : _mm512_maskz_loadu_ps(m[k], (const float *)v + (size_t)(r) * v_stride + 16 * (k)))
    int r = 0;
    for (; r + 2 <= rows; r += 2) {
        for (size_t ahead = r + WEIGHTED_AHEAD; ahead < (size_t)r + WEIGHTED_AHEAD + 2; ahead++)
            for (size_t line = 0; line < 16 * K * size; line += 64) prefetch(v, ahead * v_stride * size + line);
        __m512 a0 = _mm512_set1_ps(a[r]), a1 = _mm512_set1_ps(a[r + 1]);
        for (int k = 0; k < K; k++) {
            even[k] = _mm512_fmadd_ps(a0, ROW_CHUNK(r, k), even[k]);
            odd[k] = _mm512_fmadd_ps(a1, ROW_CHUNK(r + 1, k), odd[k]);
        }
    }
    if (r < rows)
        for (int k = 0; k < K; k++) even[k] = _mm512_fmadd_ps(_mm512_set1_ps(a[r]), ROW_CHUNK(r, k), even[k]);
#undef ROW_CHUNK
    for (int k = 0; k < K; k++) _mm512_mask_storeu_ps(out + 16 * k, m[k], _mm512_add_ps(even[k], odd[k]));
}

// Four queries at once: each row's 4 chunks of 16 values (the `left` ones of the pass) are loaded and
// widened once for the four. A prompt's queries, or a token's heads that share a key/value head, read
// the same values: one query at a time, they came from L2 four times as often, and a 7B's attention
// in a prompt took a third longer (bench/NOTES.md).
AVX512 static INLINE void weighted_four_avx512(float *out, size_t out_stride, const float *a, size_t a_stride,
                                               const void *v, size_t v_stride, int left, int rows, const int f16) {
    const size_t size = f16 ? 2 : 4;
    __mmask16 m[4];
    __m512 acc[4][4]; // (queries, chunks)
    for (int k = 0; k < 4; k++) {
        m[k] = chunk_mask16(left - 16 * k);
        for (int q = 0; q < 4; q++) acc[q][k] = _mm512_setzero_ps();
    }
    for (int r = 0; r < rows; r++) {
        for (size_t line = 0; line < 64 * size; line += 64) prefetch(v, ((size_t)r + WEIGHTED_AHEAD) * v_stride * size + line);
        __m512 chunk[4];
        for (int k = 0; k < 4; k++) {
            size_t at = (size_t)r * v_stride + 16 * k;
            chunk[k] = f16 ? _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m[k], (const uint16_t *)v + at))
                           : _mm512_maskz_loadu_ps(m[k], (const float *)v + at);
        }
        for (int q = 0; q < 4; q++) {
            __m512 weight = _mm512_set1_ps(a[q * a_stride + r]);
            for (int k = 0; k < 4; k++) acc[q][k] = _mm512_fmadd_ps(weight, chunk[k], acc[q][k]);
        }
    }
    for (int q = 0; q < 4; q++)
        for (int k = 0; k < 4; k++) _mm512_mask_storeu_ps(out + q * out_stride + 16 * k, m[k], acc[q][k]);
}

// Queries four at a time, 64 values a pass; the rest one at a time, a head of up to 128 in one pass.
AVX512 static INLINE void weighted_any_rows_avx512(float *out, size_t out_stride, const float *a, size_t a_stride,
                                                   const void *v, size_t v_stride, int n, int rows, int queries,
                                                   const int f16) {
    const size_t size = f16 ? 2 : 4;
    int q = 0;
    for (; q + 4 <= queries; q += 4)
        for (int i0 = 0; i0 < n; i0 += 64)
            weighted_four_avx512(out + q * out_stride + i0, out_stride, a + q * a_stride, a_stride,
                                 (const char *)v + i0 * size, v_stride, n - i0, rows, f16);
    for (; q < queries; q++)
        for (int i0 = 0; i0 < n; i0 += 128) {
            float *o = out + q * out_stride + i0;
            const void *vi = (const char *)v + i0 * size;
            if (n - i0 > 64) weighted_chunks_avx512(o, a + q * a_stride, vi, v_stride, n - i0, rows, f16, 8);
            else weighted_chunks_avx512(o, a + q * a_stride, vi, v_stride, n - i0, rows, f16, 4);
        }
}

AVX512 static void weighted_rows_avx512(float *out, size_t out_stride, const float *a, size_t a_stride, const float *v,
                                        size_t v_stride, int n, int rows, int queries) {
    weighted_any_rows_avx512(out, out_stride, a, a_stride, v, v_stride, n, rows, queries, 0);
}

AVX512 static void weighted_f16_rows_avx512(float *out, size_t out_stride, const float *a, size_t a_stride,
                                            const uint16_t *v, size_t v_stride, int n, int rows, int queries) {
    weighted_any_rows_avx512(out, out_stride, a, a_stride, v, v_stride, n, rows, queries, 1);
}

// to_f16_avx512 = to_f16_scalar: vcvtps2ph rounds to nearest even too.
AVX512 static void to_f16_avx512(uint16_t *dst, const float *src, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(dst + i), _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    to_f16_scalar(dst + i, src + i, n - i);
}

// quantize_avx512 = quantize, to the bit: the same multiply, and vcvtps2dq
// rounds to nearest even as lrintf does; its result is cut to 8 bits, as
// quantize's cast does, so even a NaN gives the same byte. Group sizes that
// are not multiples of 16 take the plain one.
AVX512 static void quantize_avx512(int8_t *q, float *scale, int32_t *sum, int32_t *sum16, const float *x, int n,
                                   int gs) {
    if (gs % 16 != 0) {
        quantize(q, scale, sum, sum16, x, n, gs);
        return;
    }
    for (int g = 0; g < n / gs; g++) {
        const float *xg = x + (size_t)g * gs;
        __m512 amax = _mm512_setzero_ps();
        for (int i = 0; i < gs; i += 16) // as quantize: a NaN is passed over (max returns its second operand)
            amax = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(xg + i)), amax);
        float a = _mm512_reduce_max_ps(amax), inv = a > 0.0f ? 127.0f / a : 0.0f;
        scale[g] = a / 127.0f;
        int32_t total = 0;
        for (int i = 0; i < gs; i += 16) {
            __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xg + i), _mm512_set1_ps(inv)));
            __m128i bytes = _mm512_cvtepi32_epi8(v); // the low 8 bits, as the cast to int8_t
            _mm_storeu_si128((__m128i *)(q + (size_t)g * gs + i), bytes);
            int32_t sixteen = _mm512_reduce_add_epi32(_mm512_cvtepi8_epi32(bytes));
            total += sixteen;
            if (sum16) sum16[((size_t)g * gs + i) / 16] = sixteen;
        }
        sum[g] = total;
    }
}

// --- The steps between the products, 16 floats at a time:
// --- rmsnorm_avx512 = rmsnorm, softmax_avx512 = softmax, swiglu_avx512 = swiglu

// e^x (see exp_taylor); vscalefps multiplies by 2^k, overflowing to inf and
// underflowing to 0 as expf does.
AVX512 static INLINE __m512 exp_avx512(__m512 x) {
    // e^x is 0 or inf beyond; the constant first, as max and min return their
    // second operand when one is NaN, and a NaN must stay one, as in expf
    x = _mm512_min_ps(_mm512_set1_ps(89.0f), _mm512_max_ps(_mm512_set1_ps(-104.0f), x));
    __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(EXP_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(EXP_LN2_HI), x);
    r = _mm512_fnmadd_ps(k, _mm512_set1_ps(EXP_LN2_LO), r);
    __m512 p = _mm512_set1_ps(exp_taylor[0]);
    for (int i = 1; i < 8; i++) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(exp_taylor[i]));
    return _mm512_scalef_ps(p, k);
}

AVX512 static void rmsnorm_avx512(float *out, const float *x, const float *weight, int n, float eps) {
    __m512 ss = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) {
        __m512 v = _mm512_maskz_loadu_ps(chunk_mask16(n - i), x + i);
        ss = _mm512_fmadd_ps(v, v, ss);
    }
    __m512 scale = _mm512_set1_ps(1.0f / sqrtf(_mm512_reduce_add_ps(ss) / n + eps));
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = chunk_mask16(n - i);
        __m512 v = _mm512_mul_ps(scale, _mm512_maskz_loadu_ps(m, x + i));
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, weight + i), v));
    }
}

AVX512 static void softmax_avx512(float *x, int n) {
    __m512 max = _mm512_set1_ps(-INFINITY), sum = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16)
        max = _mm512_max_ps(max, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), chunk_mask16(n - i), x + i));
    max = _mm512_set1_ps(_mm512_reduce_max_ps(max));
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = chunk_mask16(n - i);
        __m512 e = exp_avx512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), max));
        _mm512_mask_storeu_ps(x + i, m, e);
        sum = _mm512_mask_add_ps(sum, m, sum, e);
    }
    __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = chunk_mask16(n - i);
        _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv));
    }
}

// Values i..i + 15 (those of them below n).
AVX512 static INLINE void swiglu_step_avx512(float *gate, const float *up, int i, int n) {
    __mmask16 m = chunk_mask16(n - i);
    __m512 g = _mm512_maskz_loadu_ps(m, gate + i);
    __m512 silu = _mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), exp_avx512(_mm512_sub_ps(_mm512_setzero_ps(), g))));
    _mm512_mask_storeu_ps(gate + i, m, _mm512_mul_ps(silu, _mm512_maskz_loadu_ps(m, up + i)));
}

// A prompt's block (tokens x hidden_dim values) is spread over the threads,
// which would otherwise wait for one; a token's is too short to be worth it,
// and goes without a parallel region (see quantize_input).
AVX512 static void swiglu_avx512(float *gate, const float *up, int n) {
    int i;
    if (n < 1 << 16) {
        for (i = 0; i < n; i += 16) swiglu_step_avx512(gate, up, i, n);
        return;
    }
#pragma omp parallel for
    for (i = 0; i < n; i += 16) swiglu_step_avx512(gate, up, i, n);
}

static int has_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
           __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2");
}

// ----------------------------------------------------------------------------
// Fast kernels: AVX2 (with FMA and F16C): 8 floats or 32 bytes a register, 16 registers

// The lanes of a chunk of 8 floats with `left` values still to go, as a load
// mask (-1 in the lanes used): all of them, or the first `left` of the last,
// partial chunk.
AVX2 static INLINE __m256i chunk_mask8(int left) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(left), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

AVX2 static INLINE float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// The dot products of the signed bytes of w and x, as 8 sums of 4 products.
// AVX2 has no vpdpbusd; vpmaddubsw multiplies unsigned bytes by signed ones
// into 16-bit sums of pairs, so each w * x is taken as |w| * (x with w's
// sign), as dot_i8_avx512 does; a pair sum is at most 2 * 128 * 127, so it
// cannot saturate, and vpmaddwd adds the pairs into 32 bits.
AVX2 static INLINE __m256i dot_i8_avx2(__m256i w, __m256i x) {
    __m256i pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w));
    return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}

// --- float32 weights: f32_rows_avx2 = f32_rows_scalar

AVX2 static INLINE void f32_tile_avx2(float *out, size_t out_stride, const float *w, size_t w_stride, const float *x,
                                      size_t x_stride, int n, const int R, const int TT) {
    __m256 acc[4][2];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < TT; t++) acc[r][t] = _mm256_setzero_ps();
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 xv[2];
        for (int t = 0; t < TT; t++) xv[t] = _mm256_loadu_ps(x + t * x_stride + j);
        for (int r = 0; r < R; r++) {
            __m256 wv = _mm256_loadu_ps(w + r * w_stride + j);
            for (int t = 0; t < TT; t++) acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]);
        }
    }
    if (j < n) { // the last chunk, short: masked loads read zeros past the end
        __m256i m = chunk_mask8(n - j);
        __m256 xv[2];
        for (int t = 0; t < TT; t++) xv[t] = _mm256_maskload_ps(x + t * x_stride + j, m);
        for (int r = 0; r < R; r++) {
            __m256 wv = _mm256_maskload_ps(w + r * w_stride + j, m);
            for (int t = 0; t < TT; t++) acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < TT; t++) out[t * out_stride + r] = hsum256(acc[r][t]);
}

// Tiles of 4 rows by 2 tokens, then what is left one by one.
AVX2 static void f32_rows_avx2(float *out, size_t out_stride, const float *w, size_t w_stride, const float *x,
                               size_t x_stride, int n, int rows, int tokens) {
    int r = 0;
    for (; r + 4 <= rows; r += 4) {
        const float *wr = w + r * w_stride;
        int t = 0;
        for (; t + 2 <= tokens; t += 2) f32_tile_avx2(out + t * out_stride + r, out_stride, wr, w_stride, x + t * x_stride, x_stride, n, 4, 2);
        for (; t < tokens; t++) f32_tile_avx2(out + t * out_stride + r, out_stride, wr, w_stride, x + t * x_stride, x_stride, n, 4, 1);
    }
    for (; r < rows; r++)
        for (int t = 0; t < tokens; t++)
            f32_tile_avx2(out + t * out_stride + r, out_stride, w + r * w_stride, w_stride, x + t * x_stride, x_stride, n, 1, 1);
}

// --- F16 and BF16 weights: f16_rows_avx2 = f16_rows_scalar, bf16_rows_avx2 = bf16_rows_scalar

// 8 values of a row of 16-bit floats, widened: F16C's vcvtph2ps for F16, a
// shift for BF16.
AVX2 static INLINE __m256 load8_half(const uint16_t *p, WeightType type) {
    __m128i h = _mm_loadu_si128((const __m128i *)p);
    return type == WEIGHT_F16 ? _mm256_cvtph_ps(h) : _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

// A row by a token at a time; type is a constant at each call.
AVX2 static INLINE void half_rows_avx2(float *out, size_t out_stride, const uint16_t *w, size_t w_stride,
                                       const float *x, size_t x_stride, int n, int rows, int tokens,
                                       const WeightType type) {
    for (int r = 0; r < rows; r++)
        for (int t = 0; t < tokens; t++) {
            const uint16_t *wr = w + r * w_stride;
            const float *xt = x + t * x_stride;
            __m256 acc = _mm256_setzero_ps();
            int j = 0;
            for (; j + 8 <= n; j += 8) acc = _mm256_fmadd_ps(load8_half(wr + j, type), _mm256_loadu_ps(xt + j), acc);
            float sum = hsum256(acc);
            for (; j < n; j++) sum += half_to_f32(wr[j], type) * xt[j];
            out[t * out_stride + r] = sum;
        }
}

AVX2 static void f16_rows_avx2(float *out, size_t out_stride, const uint16_t *w, size_t w_stride, const float *x,
                               size_t x_stride, int n, int rows, int tokens) {
    half_rows_avx2(out, out_stride, w, w_stride, x, x_stride, n, rows, tokens, WEIGHT_F16);
}

AVX2 static void bf16_rows_avx2(float *out, size_t out_stride, const uint16_t *w, size_t w_stride, const float *x,
                                size_t x_stride, int n, int rows, int tokens) {
    half_rows_avx2(out, out_stride, w, w_stride, x, x_stride, n, rows, tokens, WEIGHT_BF16);
}

// --- int8 weights (llama2.c's, and the int8 panels GGUF's Q8_0 and Q4_0 prompts use too):
// --- q8_rows_avx2 = q8_rows_scalar

AVX2 static INLINE void q8_tile_avx2(float *out, size_t out_stride, const int8_t *wq, const float *w_scale,
                                     size_t w_stride, const int8_t *xq, const float *x_scale, size_t x_stride, int n,
                                     int gs, const int R, const int TT) {
    __m256 acc[4][2];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < TT; t++) acc[r][t] = _mm256_setzero_ps();
    for (int g = 0; g < n / gs; g++) {
        __m256i isum[4][2];
        for (int r = 0; r < R; r++)
            for (int t = 0; t < TT; t++) isum[r][t] = _mm256_setzero_si256();
        for (int j = g * gs; j < (g + 1) * gs; j += 32) {
            __m256i xv[2];
            for (int t = 0; t < TT; t++) xv[t] = _mm256_loadu_si256((const __m256i *)(xq + t * x_stride + j));
            for (int r = 0; r < R; r++) {
                __m256i wv = _mm256_loadu_si256((const __m256i *)(wq + r * w_stride + j));
                for (int t = 0; t < TT; t++) isum[r][t] = _mm256_add_epi32(isum[r][t], dot_i8_avx2(wv, xv[t]));
            }
        }
        __m256 xscale[2];
        for (int t = 0; t < TT; t++) xscale[t] = _mm256_set1_ps(x_scale[t * (x_stride / gs) + g]);
        for (int r = 0; r < R; r++) {
            __m256 wscale = _mm256_set1_ps(w_scale[r * (w_stride / gs) + g]);
            for (int t = 0; t < TT; t++)
                acc[r][t] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(isum[r][t]), xscale[t]), wscale, acc[r][t]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < TT; t++) out[t * out_stride + r] = hsum256(acc[r][t]);
}

// Tiles of 4 rows by 2 tokens, then what is left one by one.
AVX2 static void q8_rows_avx2(float *out, size_t out_stride, const int8_t *wq, const float *w_scale, size_t w_stride,
                              const int8_t *xq, const float *x_scale, const int32_t *x_sum, size_t x_stride, int n,
                              int gs, int rows, int tokens) {
    if (gs % 32 != 0) {
        q8_rows_scalar(out, out_stride, wq, w_scale, w_stride, xq, x_scale, x_sum, x_stride, n, gs, rows, tokens);
        return;
    }
    size_t w_groups = w_stride / gs, x_groups = x_stride / gs;
    int r = 0;
    for (; r + 4 <= rows; r += 4) {
        const int8_t *wr = wq + r * w_stride;
        const float *wr_scale = w_scale + r * w_groups;
        int t = 0;
        for (; t + 2 <= tokens; t += 2)
            q8_tile_avx2(out + t * out_stride + r, out_stride, wr, wr_scale, w_stride, xq + t * x_stride,
                         x_scale + t * x_groups, x_stride, n, gs, 4, 2);
        for (; t < tokens; t++)
            q8_tile_avx2(out + t * out_stride + r, out_stride, wr, wr_scale, w_stride, xq + t * x_stride,
                         x_scale + t * x_groups, x_stride, n, gs, 4, 1);
    }
    for (; r < rows; r++)
        for (int t = 0; t < tokens; t++)
            q8_tile_avx2(out + t * out_stride + r, out_stride, wq + r * w_stride, w_scale + r * w_groups, w_stride,
                         xq + t * x_stride, x_scale + t * x_groups, x_stride, n, gs, 1, 1);
}

// A row by a token at a time, a block a step; type is a constant at each call.
// --- GGUF's block types: rows_avx2_<type> = blocks_rows_scalar

// The 32 values of a block of 32 as int8 (decode_block's q), in order; as
// block32_values does on AVX-512, the fifth bits of Q5_0 and Q5_1 spread from
// 32 bits to 32 bytes with a byte shuffle and a compare instead of a mask.
AVX2 static INLINE __m256i block32_values_avx2(const uint8_t *block, const WeightType type) {
    if (type == WEIGHT_Q8_0) return load_q8_0(block);
    if (type == WEIGHT_Q4_0) return unpack_q4_0(block);
    int at = type == WEIGHT_Q4_1 ? 4 : type == WEIGHT_Q5_0 ? 6 : type == WEIGHT_Q5_1 ? 8 : 2; // the nibbles
    __m128i packed = _mm_loadu_si128((const __m128i *)(block + at)), low4 = _mm_set1_epi8(15);
    __m256i v = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(packed, 4), low4), _mm_and_si128(packed, low4));
    if (type == WEIGHT_IQ4_NL) {
        __m128i levels = _mm_loadu_si128((const __m128i *)iq4_levels);
        return _mm256_shuffle_epi8(_mm256_set_m128i(levels, levels), v);
    }
    if (type == WEIGHT_Q5_0 || type == WEIGHT_Q5_1) { // byte j gets byte j / 8 of the bits, then its bit j % 8
        __m256i bits = _mm256_shuffle_epi8(_mm256_set1_epi32((int)load_u32(block + at - 4)),
                                           _mm256_setr_epi64x(0, 0x0101010101010101ll, 0x0202020202020202ll,
                                                              0x0303030303030303ll));
        __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
        __m256i fifth = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(bits, bit), bit), _mm256_set1_epi8(16));
        v = _mm256_or_si256(v, fifth);
        if (type == WEIGHT_Q5_0) v = _mm256_sub_epi8(v, _mm256_set1_epi8(16));
    }
    return v;
}

// Blocks of 32, a row by a token at a time, a block a step (see block32_rows_avx512).
AVX2 static INLINE void block32_rows_avx2(float *out, size_t out_stride, const uint8_t *w, size_t row_bytes,
                                          const int8_t *xq, const float *x_scale, const int32_t *x_sum,
                                          size_t x_stride, int n, int rows, int tokens, const WeightType type) {
    size_t bytes = block_bytes(type);
    int has_min = type == WEIGHT_Q4_1 || type == WEIGHT_Q5_1;
    for (int r = 0; r < rows; r++)
        for (int t = 0; t < tokens; t++) {
            const int8_t *xt = xq + t * x_stride;
            const float *x_scale_t = x_scale + t * (x_stride / QBLOCK);
            const int32_t *x_sum_t = x_sum + t * (x_stride / QBLOCK);
            __m256 acc = _mm256_setzero_ps();
            float mins = 0.0f;
            for (int b = 0; b < n / QBLOCK; b++) {
                const uint8_t *block = w + r * row_bytes + b * bytes;
                __m256i isum = dot_i8_avx2(block32_values_avx2(block, type), _mm256_loadu_si256((const __m256i *)(xt + b * QBLOCK)));
                float scale = _cvtsh_ss(load_u16(block)) * x_scale_t[b];
                acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(scale), acc);
                if (has_min) mins += _cvtsh_ss(load_u16(block + 2)) * x_scale_t[b] * x_sum_t[b];
            }
            out[t * out_stride + r] = hsum256(acc) + mins;
        }
}

// Blocks of 256, as block256_row_avx512 does them, each step of 64 values in
// two halves of 32; vpmaddubsw multiplies the unsigned bytes by the signed
// input into 16-bit sums that cannot saturate (u <= 63) except for IQ4_XS,
// whose levels stay signed here, through dot_i8_avx2, with no bias.

// 8 bytes -> 8 floats.
AVX2 static INLINE __m256 u8x8_to_ps(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)); }
AVX2 static INLINE __m256 i8x8_to_ps(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)); }

// A block's scales and offsets per 16 values, bias included: [0] for runs 0..7, [1] for 8..15.
AVX2 static INLINE void block256_scales_avx2(const uint8_t *b, const WeightType type, __m256 scale[2], __m256 offset[2]) {
    __m128i s16, o16; // the 16 scales and offsets as small integers
    float d, o;       // what multiplies them
    int signed_scales = 0;
    if (type == WEIGHT_Q4_K || type == WEIGHT_Q5_K) {
        uint32_t s0 = load_u32(b + 4), s1 = load_u32(b + 8), s2 = load_u32(b + 12);
        __m128i scales = _mm_setr_epi32((int)(s0 & 0x3F3F3F3F), (int)((s2 & 0x0F0F0F0F) | ((s0 >> 6) & 0x03030303) << 4), 0, 0);
        __m128i mins = _mm_setr_epi32((int)(s1 & 0x3F3F3F3F), (int)(((s2 >> 4) & 0x0F0F0F0F) | ((s1 >> 6) & 0x03030303) << 4), 0, 0);
        s16 = _mm_unpacklo_epi8(scales, scales), o16 = _mm_unpacklo_epi8(mins, mins);
        d = _cvtsh_ss(load_u16(b)), o = -_cvtsh_ss(load_u16(b + 2));
    } else if (type == WEIGHT_Q2_K) {
        __m128i bytes = _mm_loadu_si128((const __m128i *)b), low4 = _mm_set1_epi8(15);
        s16 = _mm_and_si128(bytes, low4), o16 = _mm_and_si128(_mm_srli_epi16(bytes, 4), low4);
        d = _cvtsh_ss(load_u16(b + 80)), o = -_cvtsh_ss(load_u16(b + 82));
    } else {
        signed_scales = 1;
        if (type == WEIGHT_Q6_K) {
            s16 = _mm_loadu_si128((const __m128i *)(b + 192)), d = _cvtsh_ss(load_u16(b + 208)), o = -32.0f;
        } else if (type == WEIGHT_Q3_K) {
            uint32_t s0 = load_u32(b + 96), s1 = load_u32(b + 100), s2 = load_u32(b + 104);
            s16 = _mm_setr_epi32((int)((s0 & 0x0F0F0F0F) | (s2 & 0x03030303) << 4),
                                 (int)((s1 & 0x0F0F0F0F) | ((s2 >> 2) & 0x03030303) << 4),
                                 (int)(((s0 >> 4) & 0x0F0F0F0F) | ((s2 >> 4) & 0x03030303) << 4),
                                 (int)(((s1 >> 4) & 0x0F0F0F0F) | ((s2 >> 6) & 0x03030303) << 4));
            s16 = _mm_sub_epi8(s16, _mm_set1_epi8(32)), d = _cvtsh_ss(load_u16(b + 108)), o = -4.0f;
        } else { // IQ4_XS
            uint32_t nibbles = load_u32(b + 4);
            uint16_t tops = load_u16(b + 2);
            uint64_t t8 = 0;
            for (int k = 0; k < 8; k++) t8 |= (uint64_t)((tops >> (2 * k)) & 3) << (8 * k + 4);
            __m128i lo = _mm_cvtsi32_si128((int)(nibbles & 0x0F0F0F0F)), hi = _mm_cvtsi32_si128((int)((nibbles >> 4) & 0x0F0F0F0F));
            __m128i scales = _mm_sub_epi8(_mm_or_si128(_mm_unpacklo_epi8(lo, hi), _mm_cvtsi64_si128((long long)t8)), _mm_set1_epi8(32));
            s16 = _mm_unpacklo_epi8(scales, scales), d = _cvtsh_ss(load_u16(b)), o = 0.0f; // levels signed: no bias
        }
    }
    for (int h = 0; h < 2; h++) {
        __m128i s8 = h ? _mm_srli_si128(s16, 8) : s16;
        scale[h] = _mm256_mul_ps(_mm256_set1_ps(d), signed_scales ? i8x8_to_ps(s8) : u8x8_to_ps(s8));
        offset[h] = signed_scales ? _mm256_mul_ps(_mm256_set1_ps(o), scale[h])
                                  : _mm256_mul_ps(_mm256_set1_ps(o), u8x8_to_ps(h ? _mm_srli_si128(o16, 8) : o16));
    }
}

// Values 64 step + 32 half.. + 31 of a block of 256, as unsigned bytes (IQ4_XS: signed levels).
AVX2 static INLINE __m256i block256_values_avx2(const uint8_t *b, int step, int half, const WeightType type) {
    const __m256i low4 = _mm256_set1_epi8(15), low2 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    if (type == WEIGHT_Q4_K || type == WEIGHT_Q5_K) {
        __m256i bytes = _mm256_loadu_si256((const __m256i *)(b + (type == WEIGHT_Q5_K ? 48 : 16) + 32 * step));
        __m256i v = _mm256_and_si256(half ? _mm256_srli_epi16(bytes, 4) : bytes, low4);
        if (type == WEIGHT_Q5_K) {
            __m256i high = _mm256_srli_epi16(_mm256_loadu_si256((const __m256i *)(b + 16)), 2 * step + half);
            v = _mm256_or_si256(v, _mm256_slli_epi16(_mm256_and_si256(high, one), 4));
        }
        return v;
    }
    if (type == WEIGHT_Q6_K) {
        int h = step / 2, upper = step % 2;
        __m256i low = _mm256_loadu_si256((const __m256i *)(b + 64 * h + 32 * half));
        low = _mm256_and_si256(upper ? _mm256_srli_epi16(low, 4) : low, low4);
        __m256i top = _mm256_srli_epi16(_mm256_loadu_si256((const __m256i *)(b + 128 + 32 * h)), 4 * upper + 2 * half);
        return _mm256_or_si256(low, _mm256_slli_epi16(_mm256_and_si256(top, low2), 4));
    }
    if (type == WEIGHT_Q2_K || type == WEIGHT_Q3_K) {
        int h = step / 2, i = 2 * (step % 2) + half;
        __m256i qs = _mm256_loadu_si256((const __m256i *)(b + (type == WEIGHT_Q3_K ? 32 : 16) + 32 * h));
        __m256i v = _mm256_and_si256(_mm256_srli_epi16(qs, 2 * i), low2);
        if (type == WEIGHT_Q3_K) {
            __m256i high = _mm256_srli_epi16(_mm256_loadu_si256((const __m256i *)b), 4 * h + i);
            v = _mm256_or_si256(v, _mm256_slli_epi16(_mm256_and_si256(high, one), 2));
        }
        return v;
    }
    // IQ4_XS: sub-block 2 step + half: 16 bytes, low nibbles then high, as signed levels
    __m128i bytes = _mm_loadu_si128((const __m128i *)(b + 8 + 32 * step + 16 * half)), low4x = _mm_set1_epi8(15);
    __m256i v = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(bytes, 4), low4x), _mm_and_si128(bytes, low4x));
    __m128i levels = _mm_loadu_si128((const __m128i *)iq4_levels);
    return _mm256_shuffle_epi8(_mm256_set_m128i(levels, levels), v);
}

AVX2 static INLINE float block256_row_avx2(const uint8_t *row, const int8_t *x, const float *x_scale,
                                           const int32_t *x_sum16, int n, const WeightType type) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()}, offsets = _mm256_setzero_ps();
    size_t bytes = block_bytes(type);
    for (int b = 0; b < n / 256; b++) {
        const uint8_t *block = row + b * bytes;
        __m256 scale[2], offset[2];
        block256_scales_avx2(block, type, scale, offset);
        for (int h = 0; h < 2; h++) { // runs 8 h..8 h + 7: their 32s 4 b + 4 h + (0..3)
            __m256 xs = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(x_scale + 8 * b + 4 * h)),
                                                 _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3));
            scale[h] = _mm256_mul_ps(scale[h], xs);
            __m256 sums = _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(x_sum16 + 16 * b + 8 * h)));
            offsets = _mm256_fmadd_ps(_mm256_mul_ps(offset[h], xs), sums, offsets);
        }
        for (int step = 0; step < 4; step++)
            for (int half = 0; half < 2; half++) {
                __m256i u = block256_values_avx2(block, step, half, type);
                __m256i xv = _mm256_loadu_si256((const __m256i *)(x + 256 * b + 64 * step + 32 * half));
                __m256i isum = type == WEIGHT_IQ4_XS ? dot_i8_avx2(u, xv) : _mm256_madd_epi16(_mm256_maddubs_epi16(u, xv), ones);
                int run = 4 * step + 2 * half; // lanes 0..3: this run of 16; 4..7: the next
                __m256i which = _mm256_setr_epi32(run % 8, run % 8, run % 8, run % 8, run % 8 + 1, run % 8 + 1,
                                                  run % 8 + 1, run % 8 + 1);
                __m256 step_scale = _mm256_permutevar8x32_ps(scale[run / 8], which);
                acc[half] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), step_scale, acc[half]);
            }
    }
    return hsum256(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), offsets));
}

AVX2 static INLINE void block256_rows_avx2(float *out, size_t out_stride, const uint8_t *w, size_t row_bytes,
                                           const int8_t *xq, const float *x_scale, const int32_t *x_sum16,
                                           size_t x_stride, int n, int rows, int tokens, const WeightType type) {
    for (int r = 0; r < rows; r++)
        for (int t = 0; t < tokens; t++)
            out[t * out_stride + r] = block256_row_avx2(w + r * row_bytes, xq + t * x_stride, x_scale + t * (x_stride / QBLOCK),
                                                        x_sum16 + t * (x_stride / 16), n, type);
}

// Each block type's kernel (see BLOCK_ROWS_PARAMS): rows_avx2_Q8_0 and so on.
#define ROWS32_AVX2(T)                                                                                                 \
    AVX2 static void rows_avx2_##T(BLOCK_ROWS_PARAMS) {                                                               \
        (void)type;                                                                                                    \
        block32_rows_avx2(out, out_stride, w, row_bytes, in->q, in->scale, in->sum, in->n, in->n, rows, in->tokens,   \
                          WEIGHT_##T);                                                                                 \
    }
#define ROWS256_AVX2(T)                                                                                                \
    AVX2 static void rows_avx2_##T(BLOCK_ROWS_PARAMS) {                                                               \
        (void)type;                                                                                                    \
        block256_rows_avx2(out, out_stride, w, row_bytes, in->q, in->scale, in->sum16, in->n, in->n, rows, in->tokens, \
                           WEIGHT_##T);                                                                                \
    }
ROWS32_AVX2(Q8_0) ROWS32_AVX2(Q4_0) ROWS32_AVX2(Q4_1) ROWS32_AVX2(Q5_0) ROWS32_AVX2(Q5_1) ROWS32_AVX2(IQ4_NL)
ROWS256_AVX2(Q2_K) ROWS256_AVX2(Q3_K) ROWS256_AVX2(Q4_K) ROWS256_AVX2(Q5_K) ROWS256_AVX2(Q6_K) ROWS256_AVX2(IQ4_XS)

// --- Attention's weighted sum: weighted_rows_avx2 = weighted_rows_scalar

// 32 outputs (4 registers) at a time, every row added in order; the rows WEIGHTED_AHEAD on are
// fetched during the first pass, as in weighted_chunks_avx512.
AVX2 static void weighted_row_avx2(float *out, const float *a, const float *v, size_t v_stride, int n, int rows) {
    for (int i0 = 0; i0 < n; i0 += 32) {
        __m256i m[4];
        __m256 acc[4];
        for (int k = 0; k < 4; k++) m[k] = chunk_mask8(n - i0 - 8 * k), acc[k] = _mm256_setzero_ps();
        for (int r = 0; r < rows; r++) {
            for (size_t line = 0; i0 == 0 && line < (size_t)n * 4; line += 64) // the whole row, on the first pass
                prefetch(v, ((size_t)r + WEIGHTED_AHEAD) * v_stride * 4 + line);
            __m256 ar = _mm256_set1_ps(a[r]);
            for (int k = 0; k < 4; k++)
                acc[k] = _mm256_fmadd_ps(ar, _mm256_maskload_ps(v + r * v_stride + i0 + 8 * k, m[k]), acc[k]);
        }
        for (int k = 0; k < 4; k++) _mm256_maskstore_ps(out + i0 + 8 * k, m[k], acc[k]);
    }
}

// With a float16 cache: weighted_f16_rows_avx2 = weighted_f16_rows_scalar, 32 at a time, the tail plain.
AVX2 static void weighted_f16_row_avx2(float *out, const float *a, const uint16_t *v, size_t v_stride, int n, int rows) {
    int i0 = 0;
    for (; i0 + 32 <= n; i0 += 32) {
        __m256 acc[4];
        for (int k = 0; k < 4; k++) acc[k] = _mm256_setzero_ps();
        for (int r = 0; r < rows; r++) {
            for (size_t line = 0; i0 == 0 && line < (size_t)n * 2; line += 64) // the whole row, on the first pass
                prefetch(v, ((size_t)r + WEIGHTED_AHEAD) * v_stride * 2 + line);
            __m256 ar = _mm256_set1_ps(a[r]);
            for (int k = 0; k < 4; k++)
                acc[k] = _mm256_fmadd_ps(ar, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + r * v_stride + i0 + 8 * k))), acc[k]);
        }
        for (int k = 0; k < 4; k++) _mm256_storeu_ps(out + i0 + 8 * k, acc[k]);
    }
    for (; i0 + 8 <= n; i0 += 8) {
        __m256 acc = _mm256_setzero_ps();
        for (int r = 0; r < rows; r++)
            acc = _mm256_fmadd_ps(_mm256_set1_ps(a[r]), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + r * v_stride + i0))), acc);
        _mm256_storeu_ps(out + i0, acc);
    }
    if (i0 < n) weighted_f16_rows_scalar(out + i0, 0, a, 0, v + i0, v_stride, n - i0, rows, 1);
}
EACH_QUERY(weighted_rows_avx2, weighted_row_avx2, float) EACH_QUERY(weighted_f16_rows_avx2, weighted_f16_row_avx2, uint16_t)

// to_f16_avx2 = to_f16_scalar, with F16C's vcvtps2ph.
AVX2 static void to_f16_avx2(uint16_t *dst, const float *src, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    to_f16_scalar(dst + i, src + i, n - i);
}

// --- The steps between the products, 8 floats at a time:
// --- rmsnorm_avx2 = rmsnorm, softmax_avx2 = softmax, swiglu_avx2 = swiglu

// e^x (see exp_taylor), 2^k made from its exponent bits. x is clamped so that
// k stays in the normal range: e^x saturates at 2e38 and 1e-38, where expf
// gives inf and 0; neither changes a softmax or a SiLU.
AVX2 static INLINE __m256 exp_avx2(__m256 x) {
    x = _mm256_min_ps(_mm256_set1_ps(88.0f), _mm256_max_ps(_mm256_set1_ps(-87.3f), x)); // NaN stays NaN
    __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(EXP_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(EXP_LN2_HI), x);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(EXP_LN2_LO), r);
    __m256 p = _mm256_set1_ps(exp_taylor[0]);
    for (int i = 1; i < 8; i++) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(exp_taylor[i]));
    __m256i two_k = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(two_k));
}

AVX2 static void rmsnorm_avx2(float *out, const float *x, const float *weight, int n, float eps) {
    __m256 ss = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 8) {
        __m256 v = _mm256_maskload_ps(x + i, chunk_mask8(n - i));
        ss = _mm256_fmadd_ps(v, v, ss);
    }
    __m256 scale = _mm256_set1_ps(1.0f / sqrtf(hsum256(ss) / n + eps));
    for (int i = 0; i < n; i += 8) {
        __m256i m = chunk_mask8(n - i);
        __m256 v = _mm256_mul_ps(scale, _mm256_maskload_ps(x + i, m));
        _mm256_maskstore_ps(out + i, m, _mm256_mul_ps(_mm256_maskload_ps(weight + i, m), v));
    }
}

AVX2 static void softmax_avx2(float *x, int n) {
    float max = x[0];
    for (int i = 1; i < n; i++) max = x[i] > max ? x[i] : max;
    __m256 sum = _mm256_setzero_ps(), vmax = _mm256_set1_ps(max);
    for (int i = 0; i < n; i += 8) {
        __m256i m = chunk_mask8(n - i);
        __m256 e = _mm256_and_ps(exp_avx2(_mm256_sub_ps(_mm256_maskload_ps(x + i, m), vmax)), _mm256_castsi256_ps(m));
        _mm256_maskstore_ps(x + i, m, e);
        sum = _mm256_add_ps(sum, e);
    }
    __m256 inv = _mm256_set1_ps(1.0f / hsum256(sum));
    for (int i = 0; i < n; i += 8) {
        __m256i m = chunk_mask8(n - i);
        _mm256_maskstore_ps(x + i, m, _mm256_mul_ps(_mm256_maskload_ps(x + i, m), inv));
    }
}

AVX2 static void swiglu_avx2(float *gate, const float *up, int n) {
    for (int i = 0; i < n; i += 8) {
        __m256i m = chunk_mask8(n - i);
        __m256 g = _mm256_maskload_ps(gate + i, m);
        __m256 silu = _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), g))));
        _mm256_maskstore_ps(gate + i, m, _mm256_mul_ps(silu, _mm256_maskload_ps(up + i, m)));
    }
}

static int has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); // every AVX2 CPU has F16C too
}
#endif // x86-64

// ----------------------------------------------------------------------------
// Fast kernels: NEON (ARM64; sdot where the CPU has it): 4 floats or 16 bytes a register, 32 registers

#if defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
#include <arm_neon.h>
#include <sys/auxv.h>
#define INLINE inline __attribute__((always_inline))
#define DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))

// The dot product of 32 signed bytes of w and x, as 4 sums, added to acc.
// With the dot-product extension (ARMv8.2 sdot) it is two instructions;
// without it, widening multiplies whose 16-bit pair sums (at most
// 2 * 128 * 127) cannot overflow.
DOTPROD static INLINE int32x4_t dot32_sdot(int32x4_t acc, const int8_t *w, const int8_t *x) {
    acc = vdotq_s32(acc, vld1q_s8(w), vld1q_s8(x));
    return vdotq_s32(acc, vld1q_s8(w + 16), vld1q_s8(x + 16));
}

static INLINE int32x4_t dot32_widening(int32x4_t acc, const int8_t *w, const int8_t *x) {
    for (int h = 0; h < 32; h += 16) {
        int8x16_t wv = vld1q_s8(w + h), xv = vld1q_s8(x + h);
        int16x8_t p = vmull_s8(vget_low_s8(wv), vget_low_s8(xv));
        p = vmlal_s8(p, vget_high_s8(wv), vget_high_s8(xv));
        acc = vpadalq_s16(acc, p);
    }
    return acc;
}

// --- float32 weights: f32_rows_neon = f32_rows_scalar

// Tiles of R rows by TT tokens, R * TT sums in registers.
static INLINE void f32_tile_neon(float *out, size_t out_stride, const float *w, size_t w_stride, const float *x,
                                 size_t x_stride, int n, const int R, const int TT) {
    float32x4_t acc[4][4];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < TT; t++) acc[r][t] = vdupq_n_f32(0.0f);
    int j = 0;
    for (; j + 4 <= n; j += 4) {
        float32x4_t xv[4];
        for (int t = 0; t < TT; t++) xv[t] = vld1q_f32(x + t * x_stride + j);
        for (int r = 0; r < R; r++) {
            float32x4_t wv = vld1q_f32(w + r * w_stride + j);
            for (int t = 0; t < TT; t++) acc[r][t] = vfmaq_f32(acc[r][t], wv, xv[t]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < TT; t++) {
            float sum = vaddvq_f32(acc[r][t]);
            for (int k = j; k < n; k++) sum += w[r * w_stride + k] * x[t * x_stride + k];
            out[t * out_stride + r] = sum;
        }
}

// Tiles of 4 rows by 4 tokens, then what is left one by one.
static void f32_rows_neon(float *out, size_t out_stride, const float *w, size_t w_stride, const float *x,
                          size_t x_stride, int n, int rows, int tokens) {
    int r = 0;
    for (; r + 4 <= rows; r += 4) {
        const float *wr = w + r * w_stride;
        int t = 0;
        for (; t + 4 <= tokens; t += 4) f32_tile_neon(out + t * out_stride + r, out_stride, wr, w_stride, x + t * x_stride, x_stride, n, 4, 4);
        for (; t < tokens; t++) f32_tile_neon(out + t * out_stride + r, out_stride, wr, w_stride, x + t * x_stride, x_stride, n, 4, 1);
    }
    for (; r < rows; r++)
        for (int t = 0; t < tokens; t++)
            f32_tile_neon(out + t * out_stride + r, out_stride, w + r * w_stride, w_stride, x + t * x_stride, x_stride, n, 1, 1);
}

// --- F16 and BF16 weights: f16_rows_neon = f16_rows_scalar, bf16_rows_neon = bf16_rows_scalar

// 4 values of a row of 16-bit floats, widened.
static INLINE float32x4_t load4_half(const uint16_t *p, WeightType type) {
    return type == WEIGHT_F16 ? vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)))
                              : vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16));
}

// A row by a token at a time; type is a constant at each call.
static INLINE void half_rows_neon(float *out, size_t out_stride, const uint16_t *w, size_t w_stride, const float *x,
                                  size_t x_stride, int n, int rows, int tokens, const WeightType type) {
    for (int r = 0; r < rows; r++)
        for (int t = 0; t < tokens; t++) {
            const uint16_t *wr = w + r * w_stride;
            const float *xt = x + t * x_stride;
            float32x4_t acc = vdupq_n_f32(0.0f);
            int j = 0;
            for (; j + 4 <= n; j += 4) acc = vfmaq_f32(acc, load4_half(wr + j, type), vld1q_f32(xt + j));
            float sum = vaddvq_f32(acc);
            for (; j < n; j++) sum += half_to_f32(wr[j], type) * xt[j];
            out[t * out_stride + r] = sum;
        }
}

static void f16_rows_neon(float *out, size_t out_stride, const uint16_t *w, size_t w_stride, const float *x,
                          size_t x_stride, int n, int rows, int tokens) {
    half_rows_neon(out, out_stride, w, w_stride, x, x_stride, n, rows, tokens, WEIGHT_F16);
}

static void bf16_rows_neon(float *out, size_t out_stride, const uint16_t *w, size_t w_stride, const float *x,
                           size_t x_stride, int n, int rows, int tokens) {
    half_rows_neon(out, out_stride, w, w_stride, x, x_stride, n, rows, tokens, WEIGHT_BF16);
}

// --- int8 weights: q8_rows_neon and q8_rows_neon_sdot = q8_rows_scalar; GGUF's block types:
// --- rows_neon_<type> and rows_neon_sdot_<type> = blocks_rows_scalar
//
// Each comes twice, with sdot and without. These two families stay macros: the
// sdot version must carry the dot-product target attribute on the function
// itself, and an always-inline helper shared by both could not call dot32_sdot.

// A row by a token at a time, a group a step.
#define NEON_Q8_ROWS(NAME, ATTR, DOT)                                                                                  \
    ATTR static void NAME(float *out, size_t out_stride, const int8_t *wq, const float *w_scale, size_t w_stride,     \
                          const int8_t *xq, const float *x_scale, const int32_t *x_sum, size_t x_stride, int n,       \
                          int gs, int rows, int tokens) {                                                              \
        if (gs % 32 != 0) {                                                                                            \
            q8_rows_scalar(out, out_stride, wq, w_scale, w_stride, xq, x_scale, x_sum, x_stride, n, gs, rows, tokens); \
            return;                                                                                                    \
        }                                                                                                              \
        for (int t = 0; t < tokens; t++)                                                                               \
            for (int r = 0; r < rows; r++) {                                                                           \
                const int8_t *w = wq + r * w_stride, *x = xq + t * x_stride;                                           \
                float32x4_t acc = vdupq_n_f32(0.0f);                                                                   \
                for (int g = 0; g < n / gs; g++) {                                                                     \
                    int32x4_t isum = vdupq_n_s32(0);                                                                   \
                    for (int j = g * gs; j < (g + 1) * gs; j += 32) isum = DOT(isum, w + j, x + j);                    \
                    float scale = w_scale[r * (w_stride / gs) + g] * x_scale[t * (x_stride / gs) + g];                 \
                    acc = vfmaq_n_f32(acc, vcvtq_f32_s32(isum), scale);                                                \
                }                                                                                                      \
                out[t * out_stride + r] = vaddvq_f32(acc);                                                             \
            }                                                                                                          \
    }
NEON_Q8_ROWS(q8_rows_neon_sdot, DOTPROD, dot32_sdot)
NEON_Q8_ROWS(q8_rows_neon, , dot32_widening)

// A block's 32 values as int8, into buf: Q8_0 has them as they are, Q4_0 unpacked.
static INLINE const int8_t *block_values_neon(const uint8_t *block, int8_t *buf, WeightType type) {
    if (type == WEIGHT_Q8_0) return (const int8_t *)(block + 2);
    uint8x16_t packed = vld1q_u8(block + 2);
    int8x16_t eight = vdupq_n_s8(8);
    vst1q_s8(buf, vsubq_s8(vreinterpretq_s8_u8(vandq_u8(packed, vdupq_n_u8(15))), eight));
    vst1q_s8(buf + 16, vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(packed, 4)), eight));
    return buf;
}

// A row by a token at a time, a block a step.
#define BLOCK_ROWS_NEON(NAME, ATTR, TYPE, DOT)                                                                         \
    ATTR static void NAME(WeightType type, float *out, size_t out_stride, const uint8_t *w, size_t row_bytes,       \
                          const int8_t *xq, const float *x_scale, const int32_t *x_sum, const int32_t *x_sum16,       \
                          size_t x_stride, int n, int rows, int tokens) {                                              \
        (void)type, (void)x_sum, (void)x_sum16;                                                                        \
        int8_t buf[QBLOCK];                                                                                            \
        for (int r = 0; r < rows; r++)                                                                                 \
            for (int t = 0; t < tokens; t++) {                                                                         \
                float32x4_t acc = vdupq_n_f32(0.0f);                                                                   \
                for (int b = 0; b < n / QBLOCK; b++) {                                                                 \
                    const uint8_t *block = w + r * row_bytes + b * block_bytes(TYPE);                                  \
                    int32x4_t isum = DOT(vdupq_n_s32(0), block_values_neon(block, buf, TYPE), xq + t * x_stride + b * QBLOCK); \
                    float scale = f16_to_f32(load_u16(block)) * x_scale[t * (x_stride / QBLOCK) + b];                  \
                    acc = vfmaq_n_f32(acc, vcvtq_f32_s32(isum), scale);                                                \
                }                                                                                                      \
                out[t * out_stride + r] = vaddvq_f32(acc);                                                             \
            }                                                                                                          \
    }
BLOCK_ROWS_NEON(q8_0_rows_neon_sdot, DOTPROD, WEIGHT_Q8_0, dot32_sdot)
BLOCK_ROWS_NEON(q4_0_rows_neon_sdot, DOTPROD, WEIGHT_Q4_0, dot32_sdot)
BLOCK_ROWS_NEON(q8_0_rows_neon, , WEIGHT_Q8_0, dot32_widening)
BLOCK_ROWS_NEON(q4_0_rows_neon, , WEIGHT_Q4_0, dot32_widening)

// The other block types: each block's values decoded with NEON into q (signed,
// as decode_block's), its scales by the plain decoder, then a dot product
// per run of 16 values, one block for every token before the next.
static INLINE uint8x16_t shr_u8(uint8x16_t v, int k) { return vshlq_u8(v, vdupq_n_s8((int8_t)-k)); }
static INLINE int8x16_t as_s8(uint8x16_t v) { return vreinterpretq_s8_u8(v); }

// 16 bytes with bit j of `bits` at byte j set to `value`, the rest 0.
static INLINE uint8x16_t spread_bits(uint16_t bits, uint8_t value) {
    static const uint8_t bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    uint8x16_t bytes = vcombine_u8(vdup_n_u8((uint8_t)(bits & 0xFF)), vdup_n_u8((uint8_t)(bits >> 8)));
    return vandq_u8(vtstq_u8(bytes, vld1q_u8(bit)), vdupq_n_u8(value));
}

static INLINE void decode_values_neon(WeightType type, const uint8_t *b, int8_t *q) {
    const uint8x16_t low4 = vdupq_n_u8(15), low2 = vdupq_n_u8(3), one = vdupq_n_u8(1);
    const int8x16_t levels = vld1q_s8(iq4_levels);
    switch (type) {
    case WEIGHT_Q4_1: case WEIGHT_IQ4_NL: case WEIGHT_Q5_0: case WEIGHT_Q5_1: {
        int at = type == WEIGHT_Q4_1 ? 4 : type == WEIGHT_Q5_0 ? 6 : type == WEIGHT_Q5_1 ? 8 : 2;
        uint8x16_t bytes = vld1q_u8(b + at), lo = vandq_u8(bytes, low4), hi = vshrq_n_u8(bytes, 4);
        if (type == WEIGHT_IQ4_NL) {
            vst1q_s8(q, vqtbl1q_s8(levels, lo)), vst1q_s8(q + 16, vqtbl1q_s8(levels, hi));
            break;
        }
        if (type == WEIGHT_Q5_0 || type == WEIGHT_Q5_1) {
            uint32_t high = load_u32(b + at - 4);
            lo = vorrq_u8(lo, spread_bits((uint16_t)high, 16)), hi = vorrq_u8(hi, spread_bits((uint16_t)(high >> 16), 16));
        }
        int8x16_t center = vdupq_n_s8(type == WEIGHT_Q5_0 ? 16 : 0);
        vst1q_s8(q, vsubq_s8(as_s8(lo), center)), vst1q_s8(q + 16, vsubq_s8(as_s8(hi), center));
        break;
    }
    case WEIGHT_Q2_K: case WEIGHT_Q3_K: {
        const uint8_t *qs = b + (type == WEIGHT_Q3_K ? 32 : 16);
        for (int h = 0; h < 2; h++)
            for (int i = 0; i < 4; i++)
                for (int l = 0; l < 32; l += 16) {
                    uint8x16_t v = vandq_u8(shr_u8(vld1q_u8(qs + 32 * h + l), 2 * i), low2);
                    if (type == WEIGHT_Q3_K) { // + 4 where the high bit is set, then - 4
                        uint8x16_t high = vandq_u8(shr_u8(vld1q_u8(b + l), 4 * h + i), one);
                        v = vsubq_u8(vorrq_u8(v, vshlq_n_u8(high, 2)), vdupq_n_u8(4));
                    }
                    vst1q_s8(q + 128 * h + 32 * i + l, as_s8(v));
                }
        break;
    }
    case WEIGHT_Q4_K: case WEIGHT_Q5_K: {
        int five = type == WEIGHT_Q5_K;
        const uint8_t *qs = b + 16 + 32 * five;
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l += 16) {
                uint8x16_t bytes = vld1q_u8(qs + 32 * c + l), lo = vandq_u8(bytes, low4), hi = vshrq_n_u8(bytes, 4);
                if (five) {
                    uint8x16_t high = vld1q_u8(b + 16 + l);
                    lo = vorrq_u8(lo, vshlq_n_u8(vandq_u8(shr_u8(high, 2 * c), one), 4));
                    hi = vorrq_u8(hi, vshlq_n_u8(vandq_u8(shr_u8(high, 2 * c + 1), one), 4));
                }
                vst1q_s8(q + 64 * c + l, as_s8(lo)), vst1q_s8(q + 64 * c + 32 + l, as_s8(hi));
            }
        break;
    }
    case WEIGHT_Q6_K: {
        const int8x16_t center = vdupq_n_s8(32);
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 32; l += 16) {
                uint8x16_t ql0 = vld1q_u8(b + 64 * h + l), ql1 = vld1q_u8(b + 64 * h + 32 + l), qh = vld1q_u8(b + 128 + 32 * h + l);
                uint8x16_t v[4] = {vorrq_u8(vandq_u8(ql0, low4), vshlq_n_u8(vandq_u8(qh, low2), 4)),
                                   vorrq_u8(vandq_u8(ql1, low4), vshlq_n_u8(vandq_u8(vshrq_n_u8(qh, 2), low2), 4)),
                                   vorrq_u8(vshrq_n_u8(ql0, 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(qh, 4), low2), 4)),
                                   vorrq_u8(vshrq_n_u8(ql1, 4), vshlq_n_u8(vshrq_n_u8(qh, 6), 4))};
                for (int i = 0; i < 4; i++) vst1q_s8(q + 128 * h + 32 * i + l, vsubq_s8(as_s8(v[i]), center));
            }
        break;
    }
    case WEIGHT_IQ4_XS:
        for (int s = 0; s < 8; s++) {
            uint8x16_t bytes = vld1q_u8(b + 8 + 16 * s);
            vst1q_s8(q + 32 * s, vqtbl1q_s8(levels, vandq_u8(bytes, low4)));
            vst1q_s8(q + 32 * s + 16, vqtbl1q_s8(levels, vshrq_n_u8(bytes, 4)));
        }
        break;
    default: weight_types[type].decode_values(b, q); // a type without NEON code here: the plain decoder
    }
}

// The dot product of 16 signed bytes of w and x, as 4 sums, added to acc.
DOTPROD static INLINE int32x4_t dot16_sdot(int32x4_t acc, const int8_t *w, const int8_t *x) {
    return vdotq_s32(acc, vld1q_s8(w), vld1q_s8(x));
}
static INLINE int32x4_t dot16_widening(int32x4_t acc, const int8_t *w, const int8_t *x) {
    int8x16_t wv = vld1q_s8(w), xv = vld1q_s8(x);
    int16x8_t p = vmull_s8(vget_low_s8(wv), vget_low_s8(xv));
    return vpadalq_s16(acc, vmlal_s8(p, vget_high_s8(wv), vget_high_s8(xv)));
}

#define DECODED_ROWS_NEON(NAME, ATTR, DOT16)                                                                           \
    ATTR static void NAME(WeightType type, float *out, size_t out_stride, const uint8_t *w, size_t row_bytes,       \
                          const int8_t *xq, const float *x_scale, const int32_t *x_sum, const int32_t *x_sum16,       \
                          size_t x_stride, int n, int rows, int tokens) {                                              \
        (void)x_sum;                                                                                                   \
        int values = weight_types[type].values;                                                                        \
        _Alignas(16) int8_t q[256];                                                                                    \
        float scale[16], offset[16];                                                                                   \
        for (int r = 0; r < rows; r++) {                                                                               \
            for (int t = 0; t < tokens; t++) out[t * out_stride + r] = 0.0f;                                           \
            for (int b = 0; b < n / values; b++) {                                                                     \
                const uint8_t *block = w + r * row_bytes + b * block_bytes(type);                                      \
                weight_types[type].decode_scales(block, scale, offset);                                                \
                decode_values_neon(type, block, q);                                                                    \
                for (int t = 0; t < tokens; t++) {                                                                     \
                    const int8_t *x = xq + t * x_stride + b * values;                                                  \
                    const float *xs = x_scale + t * (x_stride / QBLOCK) + b * (values / QBLOCK);                       \
                    const int32_t *sums = x_sum16 + t * (x_stride / 16) + b * (values / 16);                           \
                    float32x4_t acc = vdupq_n_f32(0.0f);                                                               \
                    float offsets = 0.0f;                                                                              \
                    for (int k = 0; k < values / 16; k++) {                                                            \
                        int32x4_t isum = DOT16(vdupq_n_s32(0), q + 16 * k, x + 16 * k);                                \
                        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(isum), scale[k] * xs[k / 2]);                             \
                        offsets += offset[k] * xs[k / 2] * sums[k];                                                    \
                    }                                                                                                  \
                    out[t * out_stride + r] += vaddvq_f32(acc) + offsets;                                              \
                }                                                                                                      \
            }                                                                                                          \
        }                                                                                                              \
    }
DECODED_ROWS_NEON(decoded_rows_neon_sdot, DOTPROD, dot16_sdot)
DECODED_ROWS_NEON(decoded_rows_neon, , dot16_widening)

// Each block type's kernel (see BLOCK_ROWS_PARAMS): Q8_0 and Q4_0 have their
// own; the others decode a block at a time.
#define ROWS_NEON(NAME, KERNEL, T)                                                                                     \
    static void NAME(BLOCK_ROWS_PARAMS) {                                                                              \
        (void)type;                                                                                                    \
        KERNEL(WEIGHT_##T, out, out_stride, w, row_bytes, in->q, in->scale, in->sum, in->sum16, in->n, in->n, rows,    \
               in->tokens);                                                                                            \
    }
ROWS_NEON(rows_neon_Q8_0, q8_0_rows_neon, Q8_0) ROWS_NEON(rows_neon_Q4_0, q4_0_rows_neon, Q4_0)
ROWS_NEON(rows_neon_sdot_Q8_0, q8_0_rows_neon_sdot, Q8_0) ROWS_NEON(rows_neon_sdot_Q4_0, q4_0_rows_neon_sdot, Q4_0)
#define DECODED_NEON(T)                                                                                                \
    ROWS_NEON(rows_neon_##T, decoded_rows_neon, T) ROWS_NEON(rows_neon_sdot_##T, decoded_rows_neon_sdot, T)
DECODED_NEON(Q4_1) DECODED_NEON(Q5_0) DECODED_NEON(Q5_1) DECODED_NEON(IQ4_NL) DECODED_NEON(Q2_K) DECODED_NEON(Q3_K)
DECODED_NEON(Q4_K) DECODED_NEON(Q5_K) DECODED_NEON(Q6_K) DECODED_NEON(IQ4_XS)

// --- Attention's weighted sum: weighted_rows_neon = weighted_rows_scalar

// 16 outputs (4 registers) at a time, every row added in order.
static void weighted_row_neon(float *out, const float *a, const float *v, size_t v_stride, int n, int rows) {
    int i0 = 0;
    for (; i0 + 16 <= n; i0 += 16) {
        float32x4_t acc[4];
        for (int k = 0; k < 4; k++) acc[k] = vdupq_n_f32(0.0f);
        for (int r = 0; r < rows; r++)
            for (int k = 0; k < 4; k++) acc[k] = vfmaq_n_f32(acc[k], vld1q_f32(v + r * v_stride + i0 + 4 * k), a[r]);
        for (int k = 0; k < 4; k++) vst1q_f32(out + i0 + 4 * k, acc[k]);
    }
    for (; i0 < n; i0++) { // a head size that is not a multiple of 16
        float sum = 0.0f;
        for (int r = 0; r < rows; r++) sum += a[r] * v[r * v_stride + i0];
        out[i0] = sum;
    }
}

// With a float16 cache: weighted_f16_rows_neon = weighted_f16_rows_scalar, 16 at a time, the tail plain.
static void weighted_f16_row_neon(float *out, const float *a, const uint16_t *v, size_t v_stride, int n, int rows) {
    int i0 = 0;
    for (; i0 + 16 <= n; i0 += 16) {
        float32x4_t acc[4];
        for (int k = 0; k < 4; k++) acc[k] = vdupq_n_f32(0.0f);
        for (int r = 0; r < rows; r++)
            for (int k = 0; k < 4; k++)
                acc[k] = vfmaq_n_f32(acc[k], vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(v + r * v_stride + i0 + 4 * k))), a[r]);
        for (int k = 0; k < 4; k++) vst1q_f32(out + i0 + 4 * k, acc[k]);
    }
    if (i0 < n) weighted_f16_rows_scalar(out + i0, 0, a, 0, v + i0, v_stride, n - i0, rows, 1);
}
EACH_QUERY(weighted_rows_neon, weighted_row_neon, float) EACH_QUERY(weighted_f16_rows_neon, weighted_f16_row_neon, uint16_t)

// to_f16_neon = to_f16_scalar: fcvtn rounds to nearest even (the default rounding mode).
static void to_f16_neon(uint16_t *dst, const float *src, size_t n) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) vst1_u16(dst + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(src + i))));
    to_f16_scalar(dst + i, src + i, n - i);
}

// --- The steps between the products, 4 floats at a time:
// --- rmsnorm_neon = rmsnorm, softmax_neon = softmax, swiglu_neon = swiglu

// e^x (see exp_taylor), 2^k made from its exponent bits, as exp_avx2 does.
static INLINE float32x4_t exp_neon(float32x4_t x) {
    x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-87.3f)), vdupq_n_f32(88.0f));
    float32x4_t k = vrndnq_f32(vmulq_n_f32(x, EXP_LOG2E));
    float32x4_t r = vfmsq_n_f32(x, k, EXP_LN2_HI);
    r = vfmsq_n_f32(r, k, EXP_LN2_LO);
    float32x4_t p = vdupq_n_f32(exp_taylor[0]);
    for (int i = 1; i < 8; i++) p = vfmaq_f32(vdupq_n_f32(exp_taylor[i]), p, r);
    int32x4_t two_k = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(k), vdupq_n_s32(127)), 23);
    return vmulq_f32(p, vreinterpretq_f32_s32(two_k));
}

static void rmsnorm_neon(float *out, const float *x, const float *weight, int n, float eps) {
    float32x4_t ss = vdupq_n_f32(0.0f);
    int i = 0;
    for (; i + 4 <= n; i += 4) ss = vfmaq_f32(ss, vld1q_f32(x + i), vld1q_f32(x + i));
    float sum = vaddvq_f32(ss);
    for (int j = i; j < n; j++) sum += x[j] * x[j];
    float scale = 1.0f / sqrtf(sum / n + eps);
    for (i = 0; i + 4 <= n; i += 4) vst1q_f32(out + i, vmulq_f32(vld1q_f32(weight + i), vmulq_n_f32(vld1q_f32(x + i), scale)));
    for (; i < n; i++) out[i] = weight[i] * (scale * x[i]);
}

static void softmax_neon(float *x, int n) {
    float max = x[0];
    for (int i = 1; i < n; i++) max = x[i] > max ? x[i] : max;
    float32x4_t vsum = vdupq_n_f32(0.0f);
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t e = exp_neon(vsubq_f32(vld1q_f32(x + i), vdupq_n_f32(max)));
        vst1q_f32(x + i, e);
        vsum = vaddq_f32(vsum, e);
    }
    float sum = vaddvq_f32(vsum);
    for (; i < n; i++) sum += x[i] = expf(x[i] - max);
    float inv = 1.0f / sum;
    for (i = 0; i + 4 <= n; i += 4) vst1q_f32(x + i, vmulq_n_f32(vld1q_f32(x + i), inv));
    for (; i < n; i++) x[i] *= inv;
}

static void swiglu_neon(float *gate, const float *up, int n) {
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t g = vld1q_f32(gate + i);
        float32x4_t silu = vdivq_f32(g, vaddq_f32(vdupq_n_f32(1.0f), exp_neon(vnegq_f32(g))));
        vst1q_f32(gate + i, vmulq_f32(silu, vld1q_f32(up + i)));
    }
    swiglu(gate + i, up + i, n - i); // the last few
}

static int has_neon(void) { return 1; } // part of every ARM64 CPU
static int has_sdot(void) {
#ifdef HWCAP_ASIMDDP
    return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#else
    return 0;
#endif
}
#endif // ARM64

// ----------------------------------------------------------------------------
// Fast kernels: the table, and choosing a set at start-up

// Most capable first; select_kernels() takes the first this CPU supports.
static const KernelSet kernel_sets[] = {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    {.name = "avx512", .supported = has_avx512, .f32_rows = f32_rows_avx512, .weighted_rows = weighted_rows_avx512,
     .rmsnorm = rmsnorm_avx512, .softmax = softmax_avx512, .swiglu = swiglu_avx512, .q8_rows = q8_rows_avx512,
     .f16_rows = f16_rows_avx512, .bf16_rows = bf16_rows_avx512, .weighted_f16_rows = weighted_f16_rows_avx512,
     .to_f16 = to_f16_avx512, .quantize = quantize_avx512,
     .block_rows = {[WEIGHT_Q8_0] = rows_avx512_Q8_0, [WEIGHT_Q4_0] = rows_avx512_Q4_0, [WEIGHT_Q4_1] = rows_avx512_Q4_1,
      [WEIGHT_Q5_0] = rows_avx512_Q5_0, [WEIGHT_Q5_1] = rows_avx512_Q5_1, [WEIGHT_IQ4_NL] = rows_avx512_IQ4_NL,
      [WEIGHT_Q2_K] = rows_avx512_Q2_K, [WEIGHT_Q3_K] = rows_avx512_Q3_K, [WEIGHT_Q4_K] = rows_avx512_Q4_K,
      [WEIGHT_Q5_K] = rows_avx512_Q5_K, [WEIGHT_Q6_K] = rows_avx512_Q6_K, [WEIGHT_IQ4_XS] = rows_avx512_IQ4_XS},
     .packed_rows = {[WEIGHT_Q8_0] = packed_avx512_Q8_0, [WEIGHT_Q4_0] = packed_avx512_Q4_0, [WEIGHT_Q4_K] = packed_avx512_Q4_K}},
    {.name = "avx2", .supported = has_avx2, .f32_rows = f32_rows_avx2, .weighted_rows = weighted_rows_avx2,
     .rmsnorm = rmsnorm_avx2, .softmax = softmax_avx2, .swiglu = swiglu_avx2, .q8_rows = q8_rows_avx2,
     .f16_rows = f16_rows_avx2, .bf16_rows = bf16_rows_avx2, .weighted_f16_rows = weighted_f16_rows_avx2,
     .to_f16 = to_f16_avx2, .quantize = quantize,
     .block_rows = {[WEIGHT_Q8_0] = rows_avx2_Q8_0, [WEIGHT_Q4_0] = rows_avx2_Q4_0, [WEIGHT_Q4_1] = rows_avx2_Q4_1,
      [WEIGHT_Q5_0] = rows_avx2_Q5_0, [WEIGHT_Q5_1] = rows_avx2_Q5_1, [WEIGHT_IQ4_NL] = rows_avx2_IQ4_NL,
      [WEIGHT_Q2_K] = rows_avx2_Q2_K, [WEIGHT_Q3_K] = rows_avx2_Q3_K, [WEIGHT_Q4_K] = rows_avx2_Q4_K,
      [WEIGHT_Q5_K] = rows_avx2_Q5_K, [WEIGHT_Q6_K] = rows_avx2_Q6_K, [WEIGHT_IQ4_XS] = rows_avx2_IQ4_XS}},
#endif
#if defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
    {.name = "neon-sdot", .supported = has_sdot, .f32_rows = f32_rows_neon, .weighted_rows = weighted_rows_neon,
     .rmsnorm = rmsnorm_neon, .softmax = softmax_neon, .swiglu = swiglu_neon, .q8_rows = q8_rows_neon_sdot,
     .f16_rows = f16_rows_neon, .bf16_rows = bf16_rows_neon, .weighted_f16_rows = weighted_f16_rows_neon,
     .to_f16 = to_f16_neon, .quantize = quantize,
     .block_rows = {[WEIGHT_Q8_0] = rows_neon_sdot_Q8_0, [WEIGHT_Q4_0] = rows_neon_sdot_Q4_0, [WEIGHT_Q4_1] = rows_neon_sdot_Q4_1,
      [WEIGHT_Q5_0] = rows_neon_sdot_Q5_0, [WEIGHT_Q5_1] = rows_neon_sdot_Q5_1, [WEIGHT_IQ4_NL] = rows_neon_sdot_IQ4_NL,
      [WEIGHT_Q2_K] = rows_neon_sdot_Q2_K, [WEIGHT_Q3_K] = rows_neon_sdot_Q3_K, [WEIGHT_Q4_K] = rows_neon_sdot_Q4_K,
      [WEIGHT_Q5_K] = rows_neon_sdot_Q5_K, [WEIGHT_Q6_K] = rows_neon_sdot_Q6_K, [WEIGHT_IQ4_XS] = rows_neon_sdot_IQ4_XS}},
    {.name = "neon", .supported = has_neon, .f32_rows = f32_rows_neon, .weighted_rows = weighted_rows_neon,
     .rmsnorm = rmsnorm_neon, .softmax = softmax_neon, .swiglu = swiglu_neon, .q8_rows = q8_rows_neon,
     .f16_rows = f16_rows_neon, .bf16_rows = bf16_rows_neon, .weighted_f16_rows = weighted_f16_rows_neon,
     .to_f16 = to_f16_neon, .quantize = quantize,
     .block_rows = {[WEIGHT_Q8_0] = rows_neon_Q8_0, [WEIGHT_Q4_0] = rows_neon_Q4_0, [WEIGHT_Q4_1] = rows_neon_Q4_1,
      [WEIGHT_Q5_0] = rows_neon_Q5_0, [WEIGHT_Q5_1] = rows_neon_Q5_1, [WEIGHT_IQ4_NL] = rows_neon_IQ4_NL,
      [WEIGHT_Q2_K] = rows_neon_Q2_K, [WEIGHT_Q3_K] = rows_neon_Q3_K, [WEIGHT_Q4_K] = rows_neon_Q4_K,
      [WEIGHT_Q5_K] = rows_neon_Q5_K, [WEIGHT_Q6_K] = rows_neon_Q6_K, [WEIGHT_IQ4_XS] = rows_neon_IQ4_XS}},
#endif
    {PLAIN_KERNELS},
};

// Picks the kernels once at start-up. RUN_KERNELS=name forces a set (for
// comparing them); an unknown or unsupported name is an error.
static void select_kernels(void) {
    const char *want = getenv("RUN_KERNELS");
    if (want && !want[0]) want = NULL; // set but empty: as unset
    size_t n = sizeof(kernel_sets) / sizeof(kernel_sets[0]);
    for (size_t i = 0; i < n; i++) {
        if (want ? strcmp(want, kernel_sets[i].name) == 0 : kernel_sets[i].supported()) {
            if (!kernel_sets[i].supported()) fatal("RUN_KERNELS=%s: this CPU does not support it", want);
            kernels = kernel_sets[i];
            return;
        }
    }
    fatal("RUN_KERNELS=%s: no such kernel set (try avx512, avx2, neon-sdot, neon or scalar)", want);
}

// ============================================================================
// Platform: memory, files, the clock and the terminal
//
// Everything above reaches the operating system through these few functions,
// written once for POSIX (Linux, macOS, the BSDs) and once for Windows
// (built with MinGW-w64; see the README), so that neither leaks into the
// lesson.
//
// Memory on 2 MB pages: a memory map of a file uses 4 KB pages, and streaming
// gigabytes of weights through 4 KB pages spends much of each token on TLB
// misses: a 1.1B model decoded about half as fast mapped as from 2 MB pages
// (bench/NOTES.md). So by default the file is read into anonymous memory on
// 2 MB pages: on Linux, aligned to 2 MB and advised to use transparent huge
// pages; on Windows, large pages when the user may lock pages in memory (a
// privilege an administrator grants), plain memory otherwise.
//
// Reading the file costs little more than faulting in that memory, which in a
// virtual machine can take seconds for a 7B model (more when the host has
// taken the memory back from another process); read_in_pieces spreads it over
// the threads, which about halved a 7B model's load on Linux (bench/NOTES.md).
static void read_in_pieces(const void *file, unsigned char *p, size_t size, const char *path);

#ifndef _WIN32
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static void *map_huge(size_t size, size_t *mapped, const char *what) {
    size_t len = (size + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
#ifdef MAP_ANONYMOUS
    int flags = MAP_PRIVATE | MAP_ANONYMOUS, fd = -1;
#else // strict POSIX.1-2008 has no anonymous maps; a private map of /dev/zero is the same
    int flags = MAP_PRIVATE, fd = open("/dev/zero", O_RDWR);
#endif
    unsigned char *region = mmap(NULL, len + HUGE_PAGE, PROT_READ | PROT_WRITE, flags, fd, 0);
    if (fd >= 0) close(fd);
    if (region == MAP_FAILED) fatal("out of memory: %s needs %zu bytes", what, size);
    // Keep the 2 MB-aligned part; give back the rest.
    unsigned char *p = (unsigned char *)(((uintptr_t)region + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    if (p > region) munmap(region, p - region);
    munmap(p + len, region + HUGE_PAGE - p);
#ifdef MADV_HUGEPAGE
    madvise(p, len, MADV_HUGEPAGE); // a hint: without transparent huge pages this is plain memory
#endif
    *mapped = len;
    return p;
}

static void unmap_huge(void *p, size_t mapped) {
    if (p) munmap(p, mapped);
}

// Gives n bytes of a map_huge region (whole pages) back to the OS; the region
// stays mapped, and unmap_huge still frees it.
static void release_pages(void *p, size_t n) {
#ifdef MADV_DONTNEED
    madvise(p, n, MADV_DONTNEED); // private anonymous memory: its pages are freed now (a hint elsewhere)
#else
    (void)p, (void)n; // strict POSIX has only posix_madvise, which need not free anything
#endif
}

// A mapped file cut short while the program runs: reading its lost pages
// raises SIGBUS, which would end the run with no word. Said in one line
// instead, with what a signal handler may call (write, _exit).
static const char *mapped_path;
static void on_bus_error(int signal) {
    static const char before[] = "run: ", after[] = " changed while mapped (-l map): it was cut short under the "
                                                    "program; expected it unchanged until the run ends\n";
    (void)signal;
    if (write(STDERR_FILENO, before, sizeof(before) - 1) < 0) _exit(EXIT_FAILURE);
    if (mapped_path && write(STDERR_FILENO, mapped_path, strlen(mapped_path)) < 0) _exit(EXIT_FAILURE);
    if (write(STDERR_FILENO, after, sizeof(after) - 1) < 0) _exit(EXIT_FAILURE);
    _exit(EXIT_FAILURE);
}

static void catch_bus_error(const char *path) {
    struct sigaction bus = {0};
    mapped_path = path;
    bus.sa_handler = on_bus_error;
    sigemptyset(&bus.sa_mask);
    sigaction(SIGBUS, &bus, NULL);
}

// The bytes of the file at path, read into memory of our own (writable, for
// align_weights and repack_weights) or mapped read-only; *size gets its
// length, *mapped what unload_file needs. A file shorter than min_size is
// refused as too short for what.
static void *load_file(const char *path, WeightsLoad load, size_t min_size, const char *what, size_t *size,
                       size_t *mapped) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) fatal("cannot open checkpoint %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) fatal("%s: not a regular file", path);
    *size = (size_t)st.st_size;
    if (*size < min_size) fatal("%s: %zu bytes is too short for %s (%zu bytes at least)", path, *size, what, min_size);
    unsigned char *p;
    if (load == WEIGHTS_READ) {
        p = map_huge(*size + 64, mapped, path); // 64 bytes to spare for align_weights
        read_in_pieces(&fd, p, *size, path);
    } else {
        p = mmap(NULL, *size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) fatal("cannot map %s: %s", path, strerror(errno));
        *mapped = *size;
        catch_bus_error(path);
    }
    close(fd); // a mapping keeps the file open
    return p;
}

// Reads up to n bytes at offset of the file (an int: its descriptor) into p:
// how many, 0 at its end, or -1 with *error set.
static long long read_at(const void *file, unsigned char *p, size_t n, size_t offset, const char **error) {
    ssize_t got = pread(*(const int *)file, p, n, (off_t)offset);
    if (got < 0) *error = strerror(errno);
    return got;
}

static void unload_file(void *bytes, size_t mapped, WeightsLoad load) {
    (void)load; // munmap gives back both kinds
    munmap(bytes, mapped);
}

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static FILE *open_file(const char *path, const char *mode) { return fopen(path, mode); }

// The command line as given: already UTF-8 where the locale is.
static char **utf8_arguments(int argc, char **argv) {
    (void)argc;
    return argv;
}

static int stdin_is_terminal(void) { return isatty(STDIN_FILENO); }

// Whether the write that just failed found the reader gone (a closed pipe).
static int reader_left(void) { return errno == EPIPE; }

// A closed stdin (./run model.bin <&-) is an empty prompt, not an error.
static int stdin_is_open(void) { return fcntl(STDIN_FILENO, F_GETFD) != -1; }

static void on_interrupt(int signal) {
    (void)signal;
    interrupted = 1;
}

static void catch_interrupt(int on) {
    static struct sigaction previous;
    struct sigaction interrupt = {0};
    interrupt.sa_handler = on_interrupt; // no SA_RESTART: Ctrl-C must not wait for anything
    if (on) sigaction(SIGINT, &interrupt, &previous);
    else sigaction(SIGINT, &previous, NULL);
}

// This program's file: argv[0] when it names a folder, else (found on PATH)
// as Linux's /proc tells; NULL when neither can say.
static char *program_path(const char *argv0) {
    if (strchr(argv0, '/')) return strdup(argv0);
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0) return NULL;
    exe[n] = '\0';
    return strdup(exe);
}

static void start_platform(void) {
    // A reader that leaves early (./run m.gguf | head -c 5) must not kill us with SIGPIPE
    // (status 141, whatever the parent does with the signal): writes fail with EPIPE
    // instead, the run stops there and ends quietly with status 0, the text read so far.
    signal(SIGPIPE, SIG_IGN);
}

#else // Windows

#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#include <shellapi.h> // CommandLineToArgvW
#include <fcntl.h>
#include <io.h>

// The last Windows error as text, without its line break.
static const char *windows_error(void) {
    static char text[256];
    DWORD n = FormatMessageA(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, NULL, GetLastError(), 0, text,
                             sizeof(text), NULL);
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r' || text[n - 1] == ' ')) n--;
    if (n == 0) snprintf(text, sizeof(text), "error %lu", (unsigned long)GetLastError());
    else text[n] = '\0';
    return text;
}

// Large pages need the "Lock pages in memory" privilege, held by the user and
// enabled in the process; the size of one, or 0 when they cannot be had.
static size_t large_page_size(void) {
    static int tried;
    static size_t size;
    if (tried++) return size;
    HANDLE token;
    TOKEN_PRIVILEGES tp = {1, {{{0, 0}, SE_PRIVILEGE_ENABLED}}};
    if (!OpenProcessToken(GetCurrentProcess(), TOKEN_ADJUST_PRIVILEGES | TOKEN_QUERY, &token)) return 0;
    if (LookupPrivilegeValueA(NULL, "SeLockMemoryPrivilege", &tp.Privileges[0].Luid) &&
        AdjustTokenPrivileges(token, FALSE, &tp, 0, NULL, NULL) && GetLastError() == ERROR_SUCCESS)
        size = GetLargePageMinimum();
    CloseHandle(token);
    return size;
}

static void *map_huge(size_t size, size_t *mapped, const char *what) {
    size_t large = large_page_size(), len = size ? size : 1;
    if (large) { // all of it at once, and it cannot be paged out: tried, not required
        size_t len_large = (len + large - 1) / large * large;
        void *p = VirtualAlloc(NULL, len_large, MEM_RESERVE | MEM_COMMIT | MEM_LARGE_PAGES, PAGE_READWRITE);
        if (p) return *mapped = len_large, p;
    }
    void *p = VirtualAlloc(NULL, len, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE); // zeroed as first touched
    if (!p) fatal("out of memory: %s needs %zu bytes", what, size);
    *mapped = len;
    return p;
}

static void unmap_huge(void *p, size_t mapped) {
    (void)mapped;
    if (p) VirtualFree(p, 0, MEM_RELEASE);
}

static void release_pages(void *p, size_t n) {
    VirtualFree(p, n, MEM_DECOMMIT); // the address range stays reserved; large pages refuse, and stay
}

// Paths are UTF-8 inside the program, as on POSIX; Windows' own calls take them in UTF-16.
static wchar_t *utf16(const char *text) {
    int n = MultiByteToWideChar(CP_UTF8, 0, text, -1, NULL, 0);
    wchar_t *wide = xmalloc((n > 0 ? n : 1) * sizeof(wchar_t), "a path");
    if (n > 0) MultiByteToWideChar(CP_UTF8, 0, text, -1, wide, n);
    return wide;
}

static FILE *open_file(const char *path, const char *mode) {
    wchar_t *wide_path = utf16(path), *wide_mode = utf16(mode);
    FILE *f = _wfopen(wide_path, wide_mode);
    free(wide_path), free(wide_mode);
    return f;
}

// The command line in UTF-8, from Windows' UTF-16 one (the C runtime's argv
// is in the local code page, which cannot hold every character). Kept for
// the whole run, as argv is.
static char **utf8_arguments(int argc, char **argv) {
    int n;
    wchar_t **wide = CommandLineToArgvW(GetCommandLineW(), &n);
    if (!wide || n != argc) return argv; // parsed otherwise than the runtime did: keep its reading
    char **args = xmalloc((n + 1) * sizeof(char *), "the command line");
    for (int i = 0; i < n; i++) {
        int len = WideCharToMultiByte(CP_UTF8, 0, wide[i], -1, NULL, 0, NULL, NULL);
        args[i] = xmalloc(len > 0 ? len : 1, "the command line");
        if (len > 0) WideCharToMultiByte(CP_UTF8, 0, wide[i], -1, args[i], len, NULL, NULL);
    }
    LocalFree(wide);
    return args;
}

static void *load_file(const char *path, WeightsLoad load, size_t min_size, const char *what, size_t *size,
                       size_t *mapped) {
    wchar_t *wide_path = utf16(path);
    DWORD attributes = GetFileAttributesW(wide_path);
    if (attributes != INVALID_FILE_ATTRIBUTES && (attributes & FILE_ATTRIBUTE_DIRECTORY))
        fatal("%s: not a regular file", path);
    HANDLE f = CreateFileW(wide_path, GENERIC_READ, FILE_SHARE_READ, NULL, OPEN_EXISTING, FILE_FLAG_SEQUENTIAL_SCAN, NULL);
    if (f == INVALID_HANDLE_VALUE) fatal("cannot open checkpoint %s: %s", path, windows_error());
    free(wide_path);
    LARGE_INTEGER length;
    if (GetFileType(f) != FILE_TYPE_DISK || !GetFileSizeEx(f, &length)) fatal("%s: not a regular file", path);
    *size = (size_t)length.QuadPart;
    if (*size < min_size) fatal("%s: %zu bytes is too short for %s (%zu bytes at least)", path, *size, what, min_size);
    unsigned char *p;
    if (load == WEIGHTS_READ) {
        p = map_huge(*size + 64, mapped, path); // 64 bytes to spare for align_weights
        read_in_pieces(&f, p, *size, path);
    } else {
        HANDLE mapping = CreateFileMappingA(f, NULL, PAGE_READONLY, 0, 0, NULL);
        p = mapping ? MapViewOfFile(mapping, FILE_MAP_READ, 0, 0, 0) : NULL;
        if (!p) fatal("cannot map %s: %s", path, windows_error());
        CloseHandle(mapping); // the view keeps the mapping and the file open
        *mapped = *size;
    }
    CloseHandle(f);
    return p;
}

// Reads up to n bytes at offset of the file (a HANDLE) into p: how many, 0 at
// its end, or -1 with *error set. The OVERLAPPED only says where: on a handle
// opened for synchronous reads, Windows takes such calls one at a time, so
// the threads may gain nothing here (not measured).
static long long read_at(const void *file, unsigned char *p, size_t n, size_t offset, const char **error) {
    OVERLAPPED at = {0};
    at.Offset = (DWORD)offset, at.OffsetHigh = (DWORD)((unsigned long long)offset >> 32);
    DWORD got = 0;
    if (!ReadFile(*(const HANDLE *)file, p, (DWORD)n, &got, &at) && GetLastError() != ERROR_HANDLE_EOF) {
        *error = windows_error();
        return -1;
    }
    return got;
}

static void unload_file(void *bytes, size_t mapped, WeightsLoad load) {
    if (load == WEIGHTS_MAP) UnmapViewOfFile(bytes);
    else unmap_huge(bytes, mapped);
}

static double seconds_now(void) {
    LARGE_INTEGER now, per_second;
    QueryPerformanceCounter(&now);
    QueryPerformanceFrequency(&per_second);
    return (double)now.QuadPart / (double)per_second.QuadPart;
}

// A console; not _isatty, which is true of any character device, the NUL device too.
static int stdin_is_terminal(void) {
    DWORD mode;
    return GetConsoleMode(GetStdHandle(STD_INPUT_HANDLE), &mode) != 0;
}

// A write to a pipe whose reader has gone fails with ERROR_NO_DATA (Wine:
// ERROR_PIPE_NOT_CONNECTED), which the C runtime reports as EINVAL, not EPIPE,
// and other calls may have replaced the error code since: so any failed write
// to a pipe is the reader gone.
static int reader_left(void) {
    return errno == EPIPE || GetFileType(GetStdHandle(STD_OUTPUT_HANDLE)) == FILE_TYPE_PIPE;
}

static int stdin_is_open(void) {
    HANDLE handle = GetStdHandle(STD_INPUT_HANDLE);
    return handle && handle != INVALID_HANDLE_VALUE && GetFileType(handle) != FILE_TYPE_UNKNOWN;
}

static BOOL WINAPI on_interrupt(DWORD event) {
    if (event != CTRL_C_EVENT) return FALSE; // Ctrl-Break, closing the window: as usual
    interrupted = 1;
    return TRUE;
}

static void catch_interrupt(int on) { SetConsoleCtrlHandler(on_interrupt, on ? TRUE : FALSE); }

// This program's file, with / between folders (Windows takes either).
static char *program_path(const char *argv0) {
    (void)argv0;
    char exe[MAX_PATH];
    DWORD n = GetModuleFileNameA(NULL, exe, sizeof(exe));
    if (n == 0 || n >= sizeof(exe)) return NULL;
    for (char *p = exe; *p; p++)
        if (*p == '\\') *p = '/';
    return strdup(exe);
}

static UINT console_input_code_page, console_output_code_page;

static void restore_console(void) {
    SetConsoleCP(console_input_code_page);
    SetConsoleOutputCP(console_output_code_page);
}

static void start_platform(void) {
    // Text passes through as bytes: no CRLF translation on the way in or out,
    // and Ctrl-Z in a file is not its end. (No SIGPIPE here: a write to a
    // closed pipe just fails; see reader_left.)
    _setmode(_fileno(stdin), _O_BINARY);
    _setmode(_fileno(stdout), _O_BINARY);
    // The console shows the generated UTF-8 as text, and gives typed turns as UTF-8;
    // its code pages are the console's, not the process's, so they are put back at exit.
    console_input_code_page = GetConsoleCP(), console_output_code_page = GetConsoleOutputCP();
    if (console_input_code_page && console_output_code_page) { // 0: no console
        SetConsoleCP(CP_UTF8);
        SetConsoleOutputCP(CP_UTF8);
        atexit(restore_console);
    }
}

#endif // _WIN32

// The file's size bytes into p, in pieces (PIECE_BYTES), as many at once as
// there are threads. A failure ends the run once every thread has stopped,
// with the first reason given.
static void read_in_pieces(const void *file, unsigned char *p, size_t size, const char *path) {
    const size_t piece = PIECE_BYTES;
    const char *failed = NULL;
    long pieces = (long)((size + piece - 1) / piece), i;
#pragma omp parallel for schedule(dynamic, 1)
    for (i = 0; i < pieces; i++) {
        size_t at = (size_t)i * piece, end = at + piece < size ? at + piece : size;
        while (at < end) {
            const char *error = "file shrank while reading";
            long long got = read_at(file, p + at, end - at, at, &error);
            if (got <= 0) {
#pragma omp critical(read_failed)
                if (!failed) failed = error;
                break;
            }
            at += (size_t)got;
        }
    }
    if (failed) fatal("cannot read %s: %s", path, failed);
}

// ============================================================================
// Command line

// What the command line asks for.
typedef enum { MODE_GENERATE, MODE_CHAT, MODE_TOKENIZE, MODE_PPL } Mode;
static const char *const mode_names[] = {"generate", "chat", "tokenize", "ppl"};

typedef struct {
    const char *checkpoint, *tokenizer_path, *prompt, *system, *chat_format; // NULL when not given
    Mode mode;
    float temperature, topp;
    int topk, steps, steps_given, echo, reply_limit;
    unsigned long long seed;
    Stops stops;
    WeightsLoad load;
    KVCache kv;
} Options;

// The defaults, in one place: parse_options starts from them, and usage() prints them.
static const Options default_options = {.mode = MODE_GENERATE, .temperature = 1.0f, .topp = 0.9f, .topk = 0,
                                        .steps = 256, .echo = 1, .reply_limit = 0, .seed = 0,
                                        .load = WEIGHTS_READ, .kv = KV_AUTO};

static void usage(FILE *f) {
    const Options *d = &default_options;
    fprintf(f, "Usage:   run <checkpoint> [options]\n"
          "         run -m tokenize -z <tokenizer> [-i <text>]\n"
          "Example: run stories15M.bin -n 256 -i \"Once upon a time\"\n"
          "Options:\n"
          "  -t <float>  temperature, >= 0; 0 always takes the most likely token (default %.1f)\n"
          "  -p <float>  top-p (nucleus) sampling in [0, 1]; 0 or 1 turns it off (default %.1f)\n"
          "  -k <int>    top-k sampling: keep the k most likely tokens; 0 turns it off (default %d)\n"
          "  -s <int>    random seed, >= 0; 0 takes it from the clock (default %llu)\n"
          "  -n <int>    positions to run, prompt included; 0 means the model's context (default %d);\n"
          "              in ppl, the window: llama-perplexity's -c\n"
          "  -i <text>   the prompt; '-' reads it from stdin, as does an absent -i when stdin\n"
          "              is not a terminal (one trailing newline is dropped)\n"
          "  -e <0|1>    1 prints the prompt and then the continuation; 0 only the continuation (default %d)\n"
          "  -z <path>   tokenizer: a tokenizer.bin, or a GGUF file's vocabulary (default: the GGUF\n"
          "              model's own, else tokenizer.bin beside this program)\n"
          "  -m <mode>   generate, chat, tokenize, or ppl: the perplexity of the text of -i or stdin\n"
          "              (default %s)\n"
          "  -y <text>   system prompt in chat mode\n"
          "  -r <int>    chat: tokens in one reply at most; 0: half of the context still free (default %d)\n"
          "  --chat-format <name>  chat: the model's format: llama2, llama3, llama3.1, llama3.2, mistral,\n"
          "              mistral-v1, mistral-v3, mistral-v3-tekken, mistral-v7, zephyr or chatml (default:\n"
          "              the one the model's chat template asks for; without one, Llama 2's or Llama 3's)\n"
          "  --stop <text>  end the continuation or reply where this text appears, without printing it\n"
          "              (repeatable)\n"
          "  -l <how>    how weights reach memory: 'read' into memory on huge pages where possible\n"
          "              (fastest), or 'map' the file (zero copy, shared between processes) (default %s)\n"
          "  --kv <type> what the KV cache holds: f32, or f16 (half the memory); default f16 when the\n"
          "              weights are 16 bits or fewer, else f32\n"
          "  -h          print this help\n"
          "Chat (-m chat): turns come from -i (unless -i -) and then stdin, one per line; the chat\n"
          "ends at the end of input or when the context (-n positions, default the model's whole\n"
          "context; memory grows only with the positions used) is full, with status 0 (a first turn\n"
          "that cannot fit is an error, status 1).\n"
          "Text is always text: a prompt's \"<|eot_id|>\" or \"</s>\" is never the control token.\n"
          "Exit status: 0 on success, 1 when a file or the text is unusable, 2 for a bad command line.\n",
            d->temperature, d->topp, d->topk, d->seed, d->steps, d->echo, mode_names[d->mode], d->reply_limit,
            d->load == WEIGHTS_READ ? "read" : "map");
}

// A bad command line: the one-line error, then where the options are; the manual
// itself would bury the error (as git and the GNU tools, which do the same).
static void usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("run: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fputs("Try 'run -h' for the options.\n", stderr);
    exit(2);
}

static float parse_float(const char *flag, const char *s, float min, float max) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    int underflow = errno == ERANGE && fabsf(v) <= FLT_MIN; // -t 1e-40: a float nearest it, or 0, is right
    if (end == s || *end != '\0' || (errno != 0 && !underflow) || !isfinite(v) || v < min || v > max)
        usage_error("%s wants a number in [%g, %g], got '%s'", flag, min, max, s);
    return v;
}

static long long parse_int(const char *flag, const char *s, long long min, long long max) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end != '\0' || errno != 0 || v < min || v > max)
        usage_error("%s wants a whole number in [%lld, %lld], got '%s'", flag, min, max, s);
    return v;
}

// tokenizer.bin in the directory this program was started from (the current
// one when the system cannot say).
static char *default_tokenizer_path(const char *argv0) {
    char *self = program_path(argv0);
    const char *slash = self ? strrchr(self, '/') : NULL;
    size_t dir_len = slash ? (size_t)(slash - self + 1) : 0;
    char *path = xmalloc(dir_len + sizeof("tokenizer.bin"), "a path");
    memcpy(path, self, dir_len);
    strcpy(path + dir_len, "tokenizer.bin");
    free(self);
    return path;
}

// Parses the command line strictly: a bad flag or value is a usage error (status 2).
static Options parse_options(int argc, char **argv) {
    Options o = default_options;
    o.stops.text = xmalloc(argc * sizeof(char *), "the stop strings");
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(arg, "--kv") == 0) {
            if (i + 1 >= argc) usage_error("option --kv needs a value");
            const char *value = argv[++i];
            if (strcmp(value, "f32") && strcmp(value, "f16")) usage_error("--kv wants f32 or f16, got '%s'", value);
            o.kv = strcmp(value, "f16") == 0 ? KV_F16 : KV_F32;
            continue;
        }
        if (strcmp(arg, "--chat-format") == 0) {
            if (i + 1 >= argc) usage_error("option --chat-format needs a value");
            o.chat_format = argv[++i];
            int known = 0;
            for (int f = 0; f < CHAT_FORMATS; f++) known |= strcmp(o.chat_format, chat_format_names[f]) == 0;
            if (!known)
                usage_error("--chat-format wants llama2, llama3, llama3.1, llama3.2, mistral, mistral-v1, mistral-v3, "
                            "mistral-v3-tekken, mistral-v7, zephyr or chatml, got '%s'", o.chat_format);
            continue;
        }
        if (strcmp(arg, "--stop") == 0) {
            if (i + 1 >= argc) usage_error("option --stop needs a value");
            if (argv[i + 1][0] == '\0') usage_error("--stop wants a non-empty text");
            o.stops.text[o.stops.n++] = argv[++i];
            continue;
        }
        if (arg[0] != '-' || arg[1] == '\0') {
            if (o.checkpoint) usage_error("one checkpoint expected, got '%s' and '%s'", o.checkpoint, arg);
            o.checkpoint = arg;
            continue;
        }
        if (strlen(arg) != 2 || !strchr("tpksniezmylr", arg[1])) usage_error("unknown option '%s'", arg);
        if (i + 1 >= argc) usage_error("option %s needs a value", arg);
        const char *value = argv[++i];
        switch (arg[1]) {
        case 't': o.temperature = parse_float(arg, value, 0.0f, 1e6f); break;
        case 'p': o.topp = parse_float(arg, value, 0.0f, 1.0f); break;
        case 'k': o.topk = (int)parse_int(arg, value, 0, INT_MAX); break;
        case 's': o.seed = (unsigned long long)parse_int(arg, value, 0, LLONG_MAX); break;
        case 'n': o.steps = (int)parse_int(arg, value, 0, INT_MAX), o.steps_given = 1; break;
        case 'r': o.reply_limit = (int)parse_int(arg, value, 0, INT_MAX); break;
        case 'e': o.echo = (int)parse_int(arg, value, 0, 1); break;
        case 'i': o.prompt = value; break;
        case 'z': o.tokenizer_path = value; break;
        case 'y': o.system = value; break;
        case 'l':
            if (strcmp(value, "read") && strcmp(value, "map")) usage_error("-l wants read or map, got '%s'", value);
            o.load = strcmp(value, "map") == 0 ? WEIGHTS_MAP : WEIGHTS_READ;
            break;
        case 'm': {
            size_t k = 0;
            while (k < sizeof(mode_names) / sizeof(mode_names[0]) && strcmp(value, mode_names[k]) != 0) k++;
            if (k == sizeof(mode_names) / sizeof(mode_names[0]))
                usage_error("-m wants generate, chat, tokenize or ppl, got '%s'", value);
            o.mode = (Mode)k;
            break;
        }
        }
    }
    if (!o.checkpoint && o.mode != MODE_TOKENIZE) usage_error("no checkpoint given");
    return o;
}

// The text to work on: -i, or stdin when asked for (-i -) or when stdin is a
// pipe or a file. Not in chat: its turns come from stdin line by line, -i -
// or not; -i TEXT is its first turn.
static Text read_input(const Options *o) {
    Text input = {0};
    text_append(&input, "", 0);
    // A closed stdin is an empty prompt, not an error; -i - too.
    int dash = o->prompt && strcmp(o->prompt, "-") == 0;
    int from_stdin = o->mode != MODE_CHAT && (o->prompt ? dash : !stdin_is_terminal());
    if (from_stdin && stdin_is_open()) {
        free(input.data);
        input = read_all(stdin, "standard input");
        drop_final_newline(&input);
    } else if (o->prompt && !dash) {
        text_append_str(&input, o->prompt);
    }
    return input;
}

// The tokenizer: -z, else the one a GGUF file carries, else tokenizer.bin
// beside this program. It must fit the model's vocabulary.
static void load_tokenizer(Tokenizer *t, const Options *o, const Model *model, const char *argv0) {
    const char *path = o->tokenizer_path;
    char *default_path = NULL;
    if (!path && model && model->vocab && model->vocab->n > 0) {
        tokenizer_from_gguf(t, model->vocab, o->checkpoint);
        path = o->checkpoint;
    } else {
        if (!path) path = default_path = default_tokenizer_path(argv0);
        // A GGUF file lends its vocabulary; anything else is read as tokenizer.bin.
        unsigned char magic[4] = {0};
        FILE *f = open_file(path, "rb");
        int gguf = f && fread(magic, 1, 4, f) == 4 && memcmp(magic, "GGUF", 4) == 0;
        if (f) fclose(f);
        if (gguf) {
            size_t size;
            unsigned char *data = file_in_use = read_whole_file(path, &size);
            tokenizer_from_gguf_file(t, data, size, path);
            free(data);
            file_in_use = NULL;
        } else {
            build_tokenizer(t, path);
        }
    }
    if (model && t->vocab_size != model->config.vocab_size)
        fatal("%s has %d tokens but %s expects %d; give the model's own tokenizer with -z", path, t->vocab_size,
              o->checkpoint, model->config.vocab_size);
    free(default_path);
}

static void run_generate(Model *m, const Tokenizer *t, Sampler *sampler, const Options *o, const Text *input) {
    GenerateStats st = generate(m, t, sampler, input->data, input->len, o->steps, o->echo, &o->stops, stdout);
    // Timings go to stderr, so that stdout is only the text.
    fprintf(stderr, "run: prompt %d tokens in %.3f s (%.1f tok/s), generated %d tokens in %.3f s (%.1f tok/s)\n",
            st.n_fed, st.prompt_seconds, st.n_fed / st.prompt_seconds, st.n_generated, st.generate_seconds,
            st.n_generated / st.generate_seconds);
}

static void run_perplexity(Model *m, const Tokenizer *t, const Text *input) {
    double start = seconds_now();
    int n;
    int *tokens = encode(t, input->data, input->len, t->add_bos, 0, &n);
    int window = m->state.n_ctx;
    if (window < 3)
        fatal("perplexity windows of %d positions (-n, at most the model's context of %d) score nothing; "
              "expected 3 or more, as each scores its second half", window, m->config.seq_len);
    if (n < window) free(tokens); // the refusals below end the run
    if (n < 3)
        fatal("the text is %d token%s; perplexity needs 3 or more, as each window scores its second half", n,
              n == 1 ? "" : "s");
    if (n < window)
        fatal("the text is %d tokens, shorter than one perplexity window of %d positions; give -n %d or less", n,
              window, n);
    Perplexity p = perplexity(m, tokens, n, t->add_bos ? t->bos_id : -1);
    free(tokens);
    printf("perplexity %.4f, mean NLL %.4f nats over %d tokens\n", p.perplexity, p.mean_nll, p.n_predicted);
    double seconds = seconds_now() - start;
    int n_run = n / window * window; // the tokens that went through the model
    fprintf(stderr, "run: %d tokens in %d windows of %d in %.3f s (%.1f tok/s)\n", n_run, n / window, window, seconds,
            n_run / seconds);
}

static void run_chat(Model *m, const Tokenizer *t, Sampler *sampler, const Options *o, const Text *input) {
    ChatFormat format = choose_chat_format(o->chat_format, m, t, o->checkpoint);
    char today[32]; // Llama 3.2's template dates the system turn with the day the chat runs
    time_t now = time(NULL);
    strftime(today, sizeof(today), "%d %b %Y", localtime(&now));
    int first_turn = o->prompt && strcmp(o->prompt, "-") != 0; // -i -: every turn from stdin, one per line
    ChatOptions options = {o->system, first_turn ? input->data : NULL, o->reply_limit, o->stops, stdin_is_terminal(),
                           format, today};
    chat(m, t, sampler, &options, stdin, stdout);
}

#ifndef TESTING
int main(int argc, char **argv) {
    start_platform();
    argv = utf8_arguments(argc, argv);
    select_kernels();
    Options o = parse_options(argc, argv);
    Text input = read_input(&o);

    // The model, unless only tokenizing. The cache holds only the positions
    // this run can reach: -n (for perplexity, the window), or the whole
    // context for a chat without -n. Tokenizing needs only the file's vocabulary: mapped, not read.
    Model model, *m = NULL;
    if (o.checkpoint) {
        int n_ctx = o.mode == MODE_CHAT && !o.steps_given ? 0 : o.steps; // ppl: -n is the window
        build_model(&model, o.checkpoint, o.mode == MODE_TOKENIZE ? WEIGHTS_MAP : o.load, n_ctx, PROMPT_BLOCK, o.kv);
        m = &model;
    }
    Tokenizer tokenizer;
    load_tokenizer(&tokenizer, &o, m, argv[0]);

    if (o.mode == MODE_TOKENIZE) {
        tokenize(&tokenizer, input.data, input.len, stdout);
    } else {
        Sampler sampler;
        build_sampler(&sampler, m->config.vocab_size, o.temperature, o.topp, o.topk,
                      o.seed ? o.seed : (unsigned long long)time(NULL));
        if (o.mode == MODE_GENERATE) run_generate(m, &tokenizer, &sampler, &o, &input);
        if (o.mode == MODE_PPL) run_perplexity(m, &tokenizer, &input);
        if (o.mode == MODE_CHAT) run_chat(m, &tokenizer, &sampler, &o, &input);
        free_sampler(&sampler);
    }
    if (m) free_model(m);
    free_tokenizer(&tokenizer);
    free(input.data);
    free(o.stops.text);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        if (reader_left()) return 0; // the reader left early: it has what it wanted, nothing to say
        fatal("cannot write to standard output: %s", strerror(errno));
    }
    return 0;
}
#endif
