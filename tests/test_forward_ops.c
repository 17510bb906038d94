/* CPU kernels against plain double-precision definitions, on odd shapes (tails of the 4 x 2
 * tiles and of the 8-wide sums, more threads than work). */
#include <math.h>
#include <stdlib.h>

#include "backend/cpu/ops.h"
#include "backend/cpu/pool.h"
#include "test.h"

static float frand(unsigned *s) {
    *s = *s * 1103515245u + 12345u;
    return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

TEST(forward_ops_matmul_odd_shapes) {
    qvl_pool *pool = qvl_pool_new(3);
    CHECK(pool != NULL);
    if (!pool) return;
    unsigned seed = 7;
    int shapes[][3] = {{1, 1, 1}, {1, 7, 3}, {3, 9, 5}, {4, 8, 2}, {5, 17, 33}, {9, 40, 37}, {13, 100, 70}, {2, 1536, 19}};
    for (size_t t = 0; t < sizeof shapes / sizeof *shapes; t++) {
        int M = shapes[t][0], K = shapes[t][1], N = shapes[t][2];
        float *x = malloc(sizeof(float) * M * K), *w = malloc(sizeof(float) * N * K), *b = malloc(sizeof(float) * N);
        float *y = malloc(sizeof(float) * M * N);
        for (int i = 0; i < M * K; i++) x[i] = frand(&seed);
        for (int i = 0; i < N * K; i++) w[i] = frand(&seed);
        for (int i = 0; i < N; i++) b[i] = frand(&seed);
        qvl_cpu_matmul(pool, y, x, w, t % 2 ? b : NULL, M, K, N);
        double worst = 0;
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) {
                double ref = t % 2 ? b[n] : 0;
                for (int k = 0; k < K; k++) ref += (double)x[m * K + k] * w[n * K + k];
                worst = fmax(worst, fabs(y[m * N + n] - ref) / (1 + fabs(ref)));
            }
        CHECK(worst < 1e-5);
        free(x);
        free(w);
        free(b);
        free(y);
    }
    qvl_pool_free(pool);
}

TEST(forward_ops_attention_causal_gqa) {
    qvl_pool *pool = qvl_pool_new(2);
    CHECK(pool != NULL);
    if (!pool) return;
    enum { NQ = 6, NKV = 9, H = 4, HKV = 2, HD = 10, P0 = 3 };
    unsigned seed = 3;
    float q[NQ * H * HD], k[NKV * HKV * HD], v[NKV * HKV * HD], out[NQ * H * HD], scratch[2 * 4 * NKV];
    for (int i = 0; i < NQ * H * HD; i++) q[i] = frand(&seed);
    for (int i = 0; i < NKV * HKV * HD; i++) k[i] = frand(&seed), v[i] = frand(&seed);
    CHECK(qvl_cpu_attention_scratch(2, NKV) <= sizeof scratch / sizeof *scratch);
    qvl_cpu_attention(pool, out, H * HD, q, H * HD, k, v, HKV * HD, NQ, NKV, H, HKV, HD, P0, scratch);
    double worst = 0;
    for (int i = 0; i < NQ; i++)
        for (int h = 0; h < H; h++) {
            int g = h / (H / HKV), n = P0 + i + 1;
            double s[NKV], mx = -1e300, sum = 0;
            for (int j = 0; j < n; j++) {
                s[j] = 0;
                for (int e = 0; e < HD; e++) s[j] += (double)q[(i * H + h) * HD + e] * k[(j * HKV + g) * HD + e];
                s[j] /= sqrt(HD);
                mx = fmax(mx, s[j]);
            }
            for (int j = 0; j < n; j++) sum += s[j] = exp(s[j] - mx);
            for (int e = 0; e < HD; e++) {
                double o = 0;
                for (int j = 0; j < n; j++) o += s[j] / sum * v[(j * HKV + g) * HD + e];
                worst = fmax(worst, fabs(out[(i * H + h) * HD + e] - o));
            }
        }
    CHECK(worst < 1e-6);
    qvl_pool_free(pool);
}

TEST(forward_ops_norms_and_rope) {
    float x[8] = {1, -2, 3, -4, 0.5f, 0.25f, -1, 2}, w[4] = {1, 2, 0.5f, -1}, b[4] = {0.1f, 0, 0, -0.1f}, y[8];
    qvl_cpu_rmsnorm(NULL, y, x, w, 2, 4, 1e-6f);
    double rms = sqrt((1 + 4 + 9 + 16) / 4.0 + 1e-6);
    CHECK_NEAR(y[1], 2 * -2 / rms, 1e-6);
    qvl_cpu_layernorm(NULL, y, x, w, b, 2, 4, 1e-6f);
    double mean = -0.5, var = (2.25 + 2.25 + 12.25 + 12.25) / 4;
    CHECK_NEAR(y[2], (3 - mean) / sqrt(var + 1e-6) * 0.5, 1e-6);
    CHECK_NEAR(y[3], (-4 - mean) / sqrt(var + 1e-6) * -1 - 0.1, 1e-6);
    /* Half-split rotation by 90 degrees: (a, b) -> (-b, a) on pairs (d, d + 2). */
    float r[4] = {1, 2, 3, 4}, c[4] = {0, 1, 0, 1}, s[4] = {1, 0, 1, 0};
    qvl_cpu_rope_half(r, c, s, 4);
    CHECK_NEAR(r[0], -3, 1e-7);
    CHECK_NEAR(r[1], 2, 1e-7);
    CHECK_NEAR(r[2], 1, 1e-7);
    CHECK_NEAR(r[3], 4, 1e-7);
    float g[3] = {-1, 0, 2};
    qvl_cpu_gelu_tanh(NULL, g, 3);
    CHECK_NEAR(g[0], -0.158808, 1e-5);
    CHECK_NEAR(g[2], 1.954598, 1e-5);
    float e[2] = {-1, 2};
    qvl_cpu_gelu_erf(NULL, e, 2);
    CHECK_NEAR(e[0], -0.158655, 1e-5);
    CHECK_NEAR(e[1], 1.954500, 1e-5);
}
