// peak.c: how fast can this machine multiply, with nothing to wait for?
//
// A prompt is a matrix product, bound by arithmetic rather than by memory: the
// benchmark gives its speed as a share of what the cores can compute at best.
// This probe measures that best: a loop of the instruction run's prompt
// kernels use, on values held in registers (no memory traffic at all), with
// enough independent sums in flight (ACCUMULATORS) that no instruction waits
// for the one before it. It measures, with 1 thread and then 2:
//   int8: the int8 dot product (AVX-512 VNNI's vpdpbusd on 64 bytes; AVX-VNNI
//         on 32; ARM's sdot on 16), the instruction of the int8 and GGUF
//         prompt kernels; GOP/s counts a multiply and an add as 2 operations;
//   f32:  the float32 fused multiply-add (zmm, ymm or NEON's 4 lanes), the
//         instruction of the float32 kernels; GFLOP/s, 2 a lane.
// Each count gets several passes and the best one counts.
//
// Build: cc -O3 -march=native -fopenmp -o peak peak.c
// Usage: peak [passes [threads...]]   (default: 10 passes, 1 and 2 threads)
// Output, one line per kind and thread count, or "not measured" where this
// CPU (as compiled for) has no such instruction:
//   peak: int8 2 threads 1812.4 GOP/s (vpdpbusd zmm)
//   peak: f32 2 threads 436.0 GFLOP/s (vfmadd zmm)
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ACCUMULATORS 12 // (the int8 loops name 12) > latency (4-5 cycles) x throughput (2 a cycle) of both instructions on the CPUs we see
#define ITERATIONS 20000000L // each a step of all the accumulators: about 0.1 s at 2 steps a cycle and 3 GHz

#if defined(__AVX512VNNI__) || defined(__AVXVNNI__) || defined(__AVX2__)
#include <immintrin.h>
#endif
#if defined(__ARM_NEON)
#include <arm_neon.h>
#endif

// Each loop returns something computed from every accumulator, so that the
// compiler keeps every instruction; `seed` comes from the command line, so
// that it cannot fold the loop either.
#if defined(__AVX512VNNI__) && defined(__AVX512F__)
#define INT8_NAME "vpdpbusd zmm"
#define INT8_OPS (64 * 2)
static int64_t int8_loop(int seed) {
    __m512i a = _mm512_set1_epi8((char)seed), b = _mm512_set1_epi8((char)(seed + 1));
    __m512i s0 = _mm512_set1_epi32(0), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0, s8 = s0,
            s9 = s0, s10 = s0, s11 = s0;
    for (long n = 0; n < ITERATIONS; n++) {
        // One statement, the sums in registers: GCC 12 copies an intrinsic's
        // accumulator to a fresh register and back (see dpbusd512_broadcast in
        // run.c), and keeps an array of them in memory.
        __asm__("vpdpbusd %12, %13, %0\n\tvpdpbusd %12, %13, %1\n\tvpdpbusd %12, %13, %2\n\t"
                "vpdpbusd %12, %13, %3\n\tvpdpbusd %12, %13, %4\n\tvpdpbusd %12, %13, %5\n\t"
                "vpdpbusd %12, %13, %6\n\tvpdpbusd %12, %13, %7\n\tvpdpbusd %12, %13, %8\n\t"
                "vpdpbusd %12, %13, %9\n\tvpdpbusd %12, %13, %10\n\tvpdpbusd %12, %13, %11"
                : "+v"(s0), "+v"(s1), "+v"(s2), "+v"(s3), "+v"(s4), "+v"(s5), "+v"(s6), "+v"(s7), "+v"(s8),
                  "+v"(s9), "+v"(s10), "+v"(s11)
                : "v"(b), "v"(a));
    }
    __m512i all[ACCUMULATORS] = {s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11};
    int64_t s = 0;
    for (int i = 0; i < ACCUMULATORS; i++) s += _mm512_reduce_add_epi32(all[i]);
    return s;
}
#elif defined(__AVXVNNI__)
#define INT8_NAME "vpdpbusd ymm"
#define INT8_OPS (32 * 2)
static int64_t int8_loop(int seed) {
    __m256i a = _mm256_set1_epi8((char)seed), b = _mm256_set1_epi8((char)(seed + 1));
    __m256i s0 = _mm256_set1_epi32(0), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0, s8 = s0,
            s9 = s0, s10 = s0, s11 = s0;
    for (long n = 0; n < ITERATIONS; n++) // as above
        __asm__("%{vex%} vpdpbusd %12, %13, %0\n\t%{vex%} vpdpbusd %12, %13, %1\n\t%{vex%} vpdpbusd %12, %13, %2\n\t"
                "%{vex%} vpdpbusd %12, %13, %3\n\t%{vex%} vpdpbusd %12, %13, %4\n\t%{vex%} vpdpbusd %12, %13, %5\n\t"
                "%{vex%} vpdpbusd %12, %13, %6\n\t%{vex%} vpdpbusd %12, %13, %7\n\t%{vex%} vpdpbusd %12, %13, %8\n\t"
                "%{vex%} vpdpbusd %12, %13, %9\n\t%{vex%} vpdpbusd %12, %13, %10\n\t%{vex%} vpdpbusd %12, %13, %11"
                : "+x"(s0), "+x"(s1), "+x"(s2), "+x"(s3), "+x"(s4), "+x"(s5), "+x"(s6), "+x"(s7), "+x"(s8),
                  "+x"(s9), "+x"(s10), "+x"(s11)
                : "x"(b), "x"(a));
    __m256i all[ACCUMULATORS] = {s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11};
    int32_t lanes[8];
    int64_t s = 0;
    for (int i = 0; i < ACCUMULATORS; i++) {
        _mm256_storeu_si256((__m256i *)lanes, all[i]);
        for (int k = 0; k < 8; k++) s += lanes[k];
    }
    return s;
}
#elif defined(__ARM_FEATURE_DOTPROD)
#define INT8_NAME "sdot"
#define INT8_OPS (16 * 2)
static int64_t int8_loop(int seed) {
    int32x4_t acc[ACCUMULATORS];
    int8x16_t a = vdupq_n_s8((int8_t)seed), b = vdupq_n_s8((int8_t)(seed + 1));
    for (int i = 0; i < ACCUMULATORS; i++) acc[i] = vdupq_n_s32(i);
    for (long n = 0; n < ITERATIONS; n++) {
        for (int i = 0; i < ACCUMULATORS; i++) acc[i] = vdotq_s32(acc[i], a, b);
        __asm__ volatile("" : "+w"(a));
    }
    int64_t s = 0;
    for (int i = 0; i < ACCUMULATORS; i++) s += vaddvq_s32(acc[i]);
    return s;
}
#else
#define INT8_NAME NULL
#define INT8_OPS 0
static int64_t int8_loop(int seed) { return seed; }
#endif

#if defined(__AVX512F__)
#define F32_NAME "vfmadd zmm"
#define F32_OPS (16 * 2)
static double f32_loop(int seed) {
    __m512 acc[ACCUMULATORS], a = _mm512_set1_ps(1.0f + seed * 1e-9f), b = _mm512_set1_ps(0.999999f);
    for (int i = 0; i < ACCUMULATORS; i++) acc[i] = _mm512_set1_ps((float)i);
    for (long n = 0; n < ITERATIONS; n++) {
        for (int i = 0; i < ACCUMULATORS; i++) acc[i] = _mm512_fmadd_ps(acc[i], b, a);
        __asm__ volatile("" : "+v"(a));
    }
    double s = 0;
    for (int i = 0; i < ACCUMULATORS; i++) s += _mm512_reduce_add_ps(acc[i]);
    return s;
}
#elif defined(__AVX2__) && defined(__FMA__)
#define F32_NAME "vfmadd ymm"
#define F32_OPS (8 * 2)
static double f32_loop(int seed) {
    __m256 acc[ACCUMULATORS], a = _mm256_set1_ps(1.0f + seed * 1e-9f), b = _mm256_set1_ps(0.999999f);
    for (int i = 0; i < ACCUMULATORS; i++) acc[i] = _mm256_set1_ps((float)i);
    for (long n = 0; n < ITERATIONS; n++) {
        for (int i = 0; i < ACCUMULATORS; i++) acc[i] = _mm256_fmadd_ps(acc[i], b, a);
        __asm__ volatile("" : "+x"(a));
    }
    float lanes[8];
    double s = 0;
    for (int i = 0; i < ACCUMULATORS; i++) {
        _mm256_storeu_ps(lanes, acc[i]);
        for (int k = 0; k < 8; k++) s += lanes[k];
    }
    return s;
}
#elif defined(__ARM_NEON) && defined(__aarch64__)
#define F32_NAME "fmla"
#define F32_OPS (4 * 2)
static double f32_loop(int seed) {
    float32x4_t acc[ACCUMULATORS], a = vdupq_n_f32(1.0f + seed * 1e-9f), b = vdupq_n_f32(0.999999f);
    for (int i = 0; i < ACCUMULATORS; i++) acc[i] = vdupq_n_f32((float)i);
    for (long n = 0; n < ITERATIONS; n++) {
        for (int i = 0; i < ACCUMULATORS; i++) acc[i] = vfmaq_f32(a, acc[i], b);
        __asm__ volatile("" : "+w"(a));
    }
    double s = 0;
    for (int i = 0; i < ACCUMULATORS; i++) s += vaddvq_f32(acc[i]);
    return s;
}
#else
#define F32_NAME NULL
#define F32_OPS 0
static double f32_loop(int seed) { return seed; }
#endif

// Operations a second with `threads` threads, each running the loop once:
// the best of `passes`.
static double measure(int int8, int threads, int passes, int seed, double *check) {
    double best = 1e30;
    omp_set_num_threads(threads);
    for (int p = 0; p < passes; p++) {
        double t0 = omp_get_wtime();
#pragma omp parallel reduction(+ : check[0])
        check[0] += int8 ? (double)int8_loop(seed) : f32_loop(seed);
        double t = omp_get_wtime() - t0;
        if (t < best) best = t;
    }
    double ops_per_thread = (double)ITERATIONS * ACCUMULATORS * (int8 ? INT8_OPS : F32_OPS);
    return ops_per_thread * threads / best;
}

int main(int argc, char **argv) {
    int passes = argc > 1 ? atoi(argv[1]) : 10;
    if (passes < 1) {
        fprintf(stderr, "usage: peak [passes [threads...]]\n");
        return 2;
    }
    int default_threads[] = {1, 2}, n_counts = argc > 2 ? argc - 2 : 2;
    double check = 0;
    for (int kind = 0; kind < 2; kind++) {
        int int8 = kind == 0;
        const char *name = int8 ? INT8_NAME : F32_NAME;
        for (int c = 0; c < n_counts; c++) {
            int threads = argc > 2 ? atoi(argv[2 + c]) : default_threads[c];
            if (threads < 1) threads = 1;
            if (!name) {
                printf("peak: %s %d threads not measured (no such instruction in this build)\n", int8 ? "int8" : "f32",
                       threads);
                continue;
            }
            double ops = measure(int8, threads, passes, argc, &check);
            printf("peak: %s %d threads %.1f %s (%s)\n", int8 ? "int8" : "f32", threads, ops / 1e9,
                   int8 ? "GOP/s" : "GFLOP/s", name);
            fflush(stdout);
        }
    }
    if (check == 42) printf("(checksum %g)\n", check); // the sums are used
    return 0;
}
