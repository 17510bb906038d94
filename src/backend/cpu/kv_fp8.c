/* FP8 (e4m3) KV cache elements (kv_fp8.h): the conversions of model/quant.c and io/safetensors.c,
 * the decoding through a table built once. */
#include "backend/cpu/kv_fp8.h"

#include <pthread.h>

#include "io/safetensors.h"
#include "model/quant.h"

static float table[256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void build_table(void) {
    for (int c = 0; c < 256; c++) table[c] = qvl_f8e4m3_to_f32((uint8_t)c) * QVL_KV_FP8_SCALE;
}

const float *qvl_kv_fp8_table(void) {
    pthread_once(&table_once, build_table);
    return table;
}

void qvl_kv_fp8_encode(uint8_t *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = qvl_f32_to_e4m3(src[i] / QVL_KV_FP8_SCALE);
}

void qvl_kv_fp8_decode(float *dst, const uint8_t *src, size_t n) {
    const float *t = qvl_kv_fp8_table();
    for (size_t i = 0; i < n; i++) dst[i] = t[src[i]];
}
