/*
 * The streaming floor of a depthwise layer on this machine: the least
 * memory traffic any kernel for it can have, timed. Not part of the build
 * (cargo compiles only the .rs examples); a C program so that nothing of
 * ours is in the measurement:
 *
 *   gcc -O3 -fopenmp -mavx512f -mfma -o /tmp/depthwise_floor crates/kernels/examples/depthwise_floor.c
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
 * for a pass larger than 3/4 of the L3, see docs/ALGORITHMS.md).
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

static void put(float *p, __m512 v, int nt) {
    if (nt)
        _mm512_stream_ps(p, v);
    else
        _mm512_store_ps(p, v);
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
    __m512 w = _mm512_set1_ps(0.5f);
    enum { R = 301 };
    static double tf[R], tb[R], tt[R];
    for (int r = 0; r < R; r++) {
        double t0 = now_ms();
#pragma omp parallel for schedule(static)
        for (long i = 0; i < yl; i += 16) {
            __m512 a = _mm512_setzero_ps();
            for (long k = 0; k < ratio; k++)
                a = _mm512_fmadd_ps(_mm512_load_ps(x + i * ratio + k * 16), w, a);
            put(y + i, a, nt);
        }
        double t1 = now_ms();
#pragma omp parallel for schedule(static)
        for (long i = 0; i < yl; i += 16) {
            __m512 g = _mm512_load_ps(gy + i);
            for (long k = 0; k < ratio; k++) {
                long j = i * ratio + k * 16;
                put(gx + j, _mm512_fmadd_ps(_mm512_load_ps(x + j), g, w), nt);
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
