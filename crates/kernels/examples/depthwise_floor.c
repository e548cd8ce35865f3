/*
 * The streaming floor of a depthwise layer on this machine: the least
 * memory traffic any kernel for it can have, timed. Not part of the build
 * (cargo compiles only the .rs examples); a C program so that nothing of
 * ours is in the measurement:
 *
 *   gcc -O3 -fopenmp -march=native -o /tmp/depthwise_floor crates/kernels/examples/depthwise_floor.c
 *   OMP_NUM_THREADS=2 OMP_PROC_BIND=true /tmp/depthwise_floor H C STRIDE [nt]
 *
 * For a batch of 8 of H x H x C (NHWC) at STRIDE (output H/STRIDE):
 *   forward:  every input element read once, every output element written once;
 *   backward: every input and output-gradient element read once, every
 *             input-gradient element written once;
 * one FMA per element read, so the loops are bound by memory alone. Both run
 * one after the other, 301 times, as a training step and PyTorch's
 * `y = conv(x); y.backward(g)` run them; the medians are printed. With `nt`
 * the outputs are written with non-temporal stores (what the kernels do
 * for a pass larger than 3/4 of the L3, see docs/ALGORITHMS.md). Built for
 * AVX-512 where the compiler targets it (-march=native on such a CPU),
 * AVX2 + FMA otherwise.
 */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#ifdef __AVX512F__
typedef __m512 vf;
enum { L = 16 };
#define VLOAD _mm512_load_ps
#define VFMA _mm512_fmadd_ps
#define VSET1 _mm512_set1_ps
#define VZERO _mm512_setzero_ps
#define VSTORE _mm512_store_ps
#define VSTREAM _mm512_stream_ps
#else
typedef __m256 vf;
enum { L = 8 };
#define VLOAD _mm256_load_ps
#define VFMA _mm256_fmadd_ps
#define VSET1 _mm256_set1_ps
#define VZERO _mm256_setzero_ps
#define VSTORE _mm256_store_ps
#define VSTREAM _mm256_stream_ps
#endif

static void put(float *p, vf v, int nt) {
    if (nt)
        VSTREAM(p, v);
    else
        VSTORE(p, v);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s H C STRIDE [nt]\n", argv[0]);
        return 2;
    }
    long n = 8, h = atol(argv[1]), c = atol(argv[2]), s = atol(argv[3]);
    int nt = argc > 4 && strcmp(argv[4], "nt") == 0;
    long oh = h / s, xl = n * h * h * c, yl = n * oh * oh * c, ratio = xl / yl;
    if (h <= 0 || c % 16 != 0 || s <= 0 || yl == 0) {
        fprintf(stderr, "H > 0, C a multiple of 16, STRIDE > 0\n");
        return 2;
    }
    float *x = aligned_alloc(64, xl * 4), *y = aligned_alloc(64, yl * 4);
    float *gy = aligned_alloc(64, yl * 4), *gx = aligned_alloc(64, xl * 4);
#pragma omp parallel for
    for (long i = 0; i < xl; i++) {
        x[i] = i % 7;
        gx[i] = 0;
    }
#pragma omp parallel for
    for (long i = 0; i < yl; i++) {
        y[i] = 0;
        gy[i] = i % 5;
    }
    vf w = VSET1(0.5f);
    enum { R = 301 };
    static double tf[R], tb[R], tt[R];
    for (int r = 0; r < R; r++) {
        double t0 = now_ms();
#pragma omp parallel for schedule(static)
        for (long i = 0; i < yl; i += L) {
            vf a = VZERO();
            for (long k = 0; k < ratio; k++)
                a = VFMA(VLOAD(x + i * ratio + k * L), w, a);
            put(y + i, a, nt);
        }
        double t1 = now_ms();
#pragma omp parallel for schedule(static)
        for (long i = 0; i < yl; i += L) {
            vf g = VLOAD(gy + i);
            for (long k = 0; k < ratio; k++) {
                long j = i * ratio + k * L;
                put(gx + j, VFMA(VLOAD(x + j), g, w), nt);
            }
        }
        _mm_sfence();
        double t2 = now_ms();
        tf[r] = t1 - t0;
        tb[r] = t2 - t1;
        tt[r] = t2 - t0;
    }
    qsort(tf, R, sizeof(double), cmp);
    qsort(tb, R, sizeof(double), cmp);
    qsort(tt, R, sizeof(double), cmp);
    printf("%ldx%ldx%ld s%ld%s: forward %.3f  backward %.3f  forward;backward %.3f ms"
           "  (%.1f MB forward, %.1f MB backward)\n",
           h, h, c, s, nt ? " nt" : "", tf[R / 2], tb[R / 2], tt[R / 2], (xl + yl) * 4e-6,
           (2 * xl + yl) * 4e-6);
    return 0;
}
