/* The bundled trained model (models/qvl-tiny-ocr, issue 8) on the CPU against transformers: `qvl eval`
 * greedy predictions on the held-out set (240 samples) must be identical to transformers'
 * (tests/fixtures/tiny-ocr-heldout/transformers_predictions.json, bf16 on the GPU machine) for at
 * least 99% of them, and the exact-match accuracy within 1 point: at most 2 differing predictions
 * and at most 2 samples of difference in the exact-match count. One sample differs today (216), a
 * near-tie under one bf16 step of the logit (tools/tiny_ocr_margin.c measures it).
 * The full set takes ~12 s on 2 cores; under the sanitizers (~10x slower) the first 30 samples
 * are run against the same absolute budget. */
#include "tiny_ocr_check.h"

#if defined(__SANITIZE_ADDRESS__)
#define TINY_OCR_N 30
#else
#define TINY_OCR_N HELDOUT_N
#endif

TEST(tiny_ocr_cpu_matches_transformers) { tiny_ocr_check("--device cpu --threads 2", TINY_OCR_N); }
