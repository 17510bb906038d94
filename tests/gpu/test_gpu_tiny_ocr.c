/* The bundled trained model on the GPU path: the same bars as the CPU test (tests/tiny_ocr_check.h):
 * `qvl eval --device cuda` on all 240 held-out samples, >= 99% of the predictions identical to
 * transformers' and the exact-match accuracy within 1 point. */
#include "../tiny_ocr_check.h"

TEST(gpu_tiny_ocr_matches_transformers) { tiny_ocr_check("--device cuda", HELDOUT_N); }
