/* Without the CUDA build there are no CUDA devices and no CUDA model. */
#ifndef QVL_CUDA
#include "backend/cuda/cuda_device.h"
#include "backend/cuda/cuda_sample.h"
#include "model/model_cuda.h"
#include "util/error.h"

int qvl_cuda_device_count(void) { return 0; }
int qvl_cuda_device_info(char *name, size_t name_len, size_t *total_bytes) {
    (void)name; (void)name_len; (void)total_bytes;
    return -1;
}
double qvl_cuda_context_mib(void) { return -1; }

static int no_cuda(void) { return qvl_errorf("cuda: this build has no CUDA backend"); }

qvl_cuda_model *qvl_cuda_model_open(const char *model_dir, const qvl_cuda_opts *o) {
    (void)model_dir; (void)o;
    no_cuda();
    return NULL;
}
void qvl_cuda_model_close(qvl_cuda_model *m) { (void)m; }
const qvl_config *qvl_cuda_model_config(const qvl_cuda_model *m) { (void)m; return NULL; }
const qvl_mem_plan *qvl_cuda_model_plan(const qvl_cuda_model *m) { (void)m; return NULL; }
double qvl_cuda_model_arena_mib(const qvl_cuda_model *m) { (void)m; return 0; }
double qvl_cuda_model_peak_mib(const qvl_cuda_model *m) { (void)m; return 0; }
long qvl_cuda_model_max_image_tokens(const qvl_cuda_model *m) { (void)m; return 0; }
const char *qvl_cuda_model_device_name(const qvl_cuda_model *m) { (void)m; return ""; }
const char *qvl_cuda_model_gemv_report(const qvl_cuda_model *m) { (void)m; return ""; }
void qvl_cuda_model_gemm_setups(const qvl_cuda_model *m, int *count, double *ms, double *prepare_ms) {
    (void)m;
    *count = 0, *ms = 0, *prepare_ms = 0;
}
void qvl_cuda_profiler(int on) { (void)on; }
void *qvl_cuda_pixel_staging(qvl_cuda_model *m, size_t *bytes) {
    (void)m;
    *bytes = 0;
    return NULL;
}
void qvl_cuda_clear_images(qvl_cuda_model *m) { (void)m; }
int qvl_cuda_encode_image(qvl_cuda_model *m, const qvl_pixel_values *pv) { (void)m; (void)pv; return no_cuda(); }
int qvl_cuda_encode_image_bf16(qvl_cuda_model *m, const qvl_pixel_values *pv, const uint16_t *pixels) {
    (void)m; (void)pv; (void)pixels;
    return no_cuda();
}
int qvl_cuda_prefill(qvl_cuda_model *m, const int32_t *ids, int n) { (void)m; (void)ids; (void)n; return no_cuda(); }
int qvl_cuda_decode(qvl_cuda_model *m, int32_t id) { (void)m; (void)id; return no_cuda(); }
int qvl_cuda_seq_len(const qvl_cuda_model *m) { (void)m; return 0; }
int qvl_cuda_logits(qvl_cuda_model *m, float *out) { (void)m; (void)out; return no_cuda(); }
int qvl_cuda_set_picking(qvl_cuda_model *m, const qvl_cuda_pick_params *p, const double *uniforms, int n_uniforms) {
    (void)m; (void)p; (void)uniforms; (void)n_uniforms;
    return no_cuda();
}
qvl_cuda_picker *qvl_cuda_picker_new(int vocab, int max_uniforms) {
    (void)vocab; (void)max_uniforms;
    no_cuda();
    return NULL;
}
void qvl_cuda_picker_free(qvl_cuda_picker *p) { (void)p; }
int qvl_cuda_picker_reset(qvl_cuda_picker *p, const qvl_cuda_pick_params *pp, const int32_t *prompt, int n_prompt,
                          const double *uniforms, int n_uniforms) {
    (void)p; (void)pp; (void)prompt; (void)n_prompt; (void)uniforms; (void)n_uniforms;
    return no_cuda();
}
int qvl_cuda_picker_pick(qvl_cuda_picker *p, const float *logits) { (void)p; (void)logits; return no_cuda(); }
double qvl_cuda_picker_time_us(qvl_cuda_picker *p, const float *logits, int picks) {
    (void)p; (void)logits; (void)picks;
    return no_cuda();
}
#else
typedef int qvl_cuda_stub_unused;
#endif
