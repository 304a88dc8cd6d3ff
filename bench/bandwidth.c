// bandwidth.c: how fast can this machine read memory?
//
// The benchmark compares run's decode speed with the speed at which the
// weights could at best be streamed from RAM, so it needs that speed. This
// probe allocates a buffer much larger than any cache (1 GiB by default),
// writes it once so every page is really backed by RAM, then sums it as
// 64-bit integers, vectorized, with 1 thread and then with 2 threads (or the
// counts given on the command line). Integer adds have a latency of one
// cycle, so the sum never waits on itself: the loop is limited only by how
// fast the loads arrive. Each thread count gets several passes and the best
// one counts (the least disturbed by whatever else runs).
//
// Build: cc -O3 -march=native -fopenmp -o bandwidth bandwidth.c
// Usage: bandwidth [MiB [passes [threads...]]]   (default: 1024 MiB, 20 passes, 1 and 2 threads)
// Output, one line per thread count (GB = 1e9 bytes):
//   bandwidth: 1 threads 23.41 GB/s
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

// Sums the buffer with the current OpenMP thread count. The static schedule
// gives each thread the same contiguous half it wrote in first_touch, so on a
// multi-socket machine each thread reads its own node's memory.
static uint64_t sum_all(const uint64_t *a, size_t n) {
    uint64_t s = 0;
#pragma omp parallel for simd schedule(static) reduction(+ : s)
    for (size_t i = 0; i < n; i++) s += a[i];
    return s;
}

static void first_touch(uint64_t *a, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) a[i] = i;
}

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 1024;
    int passes = argc > 2 ? atoi(argv[2]) : 20;
    if (mib < 1 || passes < 1) {
        fprintf(stderr, "usage: bandwidth [MiB [passes [threads...]]]\n");
        return 2;
    }
    size_t bytes = mib << 20, n = bytes / sizeof(uint64_t);
    // In 2 MiB pages where the kernel has transparent huge pages: fewer TLB
    // misses, as run's own weight buffers, and a much faster first touch.
    size_t huge = 2 << 20, rounded = (bytes + huge - 1) / huge * huge;
    uint64_t *a = aligned_alloc(huge, rounded);
    if (!a) {
        fprintf(stderr, "bandwidth: cannot allocate %zu MiB\n", mib);
        return 1;
    }
#ifdef MADV_HUGEPAGE
    madvise(a, rounded, MADV_HUGEPAGE); // only a hint
#endif
    int max_threads = omp_get_max_threads(); // what OMP_NUM_THREADS allows
    omp_set_num_threads(max_threads);
    first_touch(a, n);

    int default_threads[] = {1, 2};
    int n_counts = argc > 3 ? argc - 3 : 2;
    uint64_t check = 0;
    for (int c = 0; c < n_counts; c++) {
        int threads = argc > 3 ? atoi(argv[3 + c]) : default_threads[c];
        if (threads < 1) threads = 1;
        omp_set_num_threads(threads);
        double best = 1e30;
        for (int p = 0; p < passes; p++) {
            double t0 = omp_get_wtime();
            check += sum_all(a, n);
            double t = omp_get_wtime() - t0;
            if (t < best) best = t;
        }
        printf("bandwidth: %d threads %.2f GB/s\n", threads, bytes / best / 1e9);
        fflush(stdout);
    }
    // The sums are used, so the compiler cannot drop the loop.
    if (check == 42) printf("(checksum %llu)\n", (unsigned long long)check);
    free(a);
    return 0;
}
