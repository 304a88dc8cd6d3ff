/* bench/sampling.c: what choosing one token costs over a large vocabulary.

       cc -O3 -fopenmp -Wno-unused-function -o sampling bench/sampling.c -lm
       ./sampling [vocab_size [repetitions [sd]]]   (default 128256, 301, and five sds)

   It includes run.c whole (with TESTING, which leaves out main), as
   test_all.c does, and times run's own sample() after select_kernels(), on
   one thread, as run calls it once per generated token: -t 1 -p 0.9 (top-p,
   sample_topp's buckets, no sort of the vocabulary), and for comparison
   -t 0 (greedy: argmax) and -t 1 -p 1 (the whole distribution, no top-p).

   The logits are normal with standard deviations from flat (0.5, 1: a
   random-weight model, or a high temperature; top-p then keeps most of the
   vocabulary) to peaked (3 to 8, about a trained model's spread; top-p keeps
   from thousands of tokens down to a handful). sample() overwrites the
   logits with probabilities, so each repetition gets a fresh copy, outside
   the timed call. Each figure is the median over the repetitions, in
   microseconds (one sd only when given, e.g. to profile one case under
   perf); bench.py runs this and reads the lines it prints:

       sampling: sd 3.0: topp 512.3 us (min 498.1), greedy 30.2 us, all 410.5 us, nucleus 1234 tokens
*/

#define TESTING
#include "../run.c"

static int compare_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Standard normal numbers (Box-Muller) from run's own xorshift generator.
static float normal(uint64_t *state) {
    float u = (random_u32(state) + 1.0f) / 4294967297.0f, v = random_f32(state);
    return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

// The median and the least of `reps` timings (seconds) of sample() on fresh copies of base.
static double time_sample(Sampler *s, const float *base, float *work, int n, int reps, double *best) {
    double *t = xmalloc(reps * sizeof(double), "the timings");
    volatile int sink = 0;
    for (int r = 0; r < reps; r++) {
        memcpy(work, base, n * sizeof(float));
        double t0 = seconds_now();
        sink += sample(s, work);
        t[r] = seconds_now() - t0;
    }
    (void)sink;
    qsort(t, reps, sizeof(double), compare_double);
    double median = t[reps / 2];
    *best = t[0];
    free(t);
    return median;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 128256, reps = argc > 2 ? atoi(argv[2]) : 301;
    float sds[] = {0.5f, 1.0f, 3.0f, 5.0f, 8.0f}, one = argc > 3 ? (float)atof(argv[3]) : 0.0f;
    if (n < 2 || reps < 1 || argc > 4 || (argc > 3 && !(one > 0.0f))) {
        fprintf(stderr, "usage: %s [vocab_size >= 2 [repetitions >= 1 [sd > 0]]]\n", argv[0]);
        return 2;
    }
    select_kernels();
    printf("sampling: vocabulary %d, %d repetitions each, kernels %s\n", n, reps, kernels.name);
    float *base = xmalloc(n * sizeof(float), "the logits"), *work = xmalloc(n * sizeof(float), "the logits");
    uint64_t rng = 20240917;
    size_t n_sds = sizeof(sds) / sizeof(sds[0]);
    if (one > 0.0f) sds[0] = one, n_sds = 1;
    for (size_t k = 0; k < n_sds; k++) {
        for (int i = 0; i < n; i++) base[i] = sds[k] * normal(&rng);
        Sampler topp, greedy, all;
        build_sampler(&topp, n, 1.0f, 0.9f, 0, 42);
        build_sampler(&greedy, n, 0.0f, 0.9f, 0, 42);
        build_sampler(&all, n, 1.0f, 1.0f, 0, 42);
        // A few untimed calls first: the sampler's scratch memory is faulted in by then.
        for (int w = 0; w < 3; w++) {
            memcpy(work, base, n * sizeof(float));
            sample(&topp, work);
        }
        double best_topp, best_greedy, best_all;
        double med_topp = time_sample(&topp, base, work, n, reps, &best_topp);
        double med_greedy = time_sample(&greedy, base, work, n, reps, &best_greedy);
        double med_all = time_sample(&all, base, work, n, reps, &best_all);
        // How many tokens top-p keeps: select_candidates, the definition (slow, once).
        memcpy(work, base, n * sizeof(float));
        kernels.softmax(work, n);
        float mass;
        int kept = select_candidates(&topp, work, &mass);
        printf("sampling: sd %.1f: topp %.1f us (min %.1f), greedy %.1f us, all %.1f us, nucleus %d tokens\n",
               sds[k], 1e6 * med_topp, 1e6 * best_topp, 1e6 * med_greedy, 1e6 * med_all, kept);
        free_sampler(&topp);
        free_sampler(&greedy);
        free_sampler(&all);
    }
    free(base);
    free(work);
    return 0;
}
