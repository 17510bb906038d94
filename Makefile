# qvl build. `make` builds build/qvl and build/libqvl.a; `make test` runs the CPU test suite.
# BUILD=dir selects the output folder (several builds can coexist, e.g. build-asan).
BUILD    ?= build
CC       ?= cc
NVCC     ?= $(shell command -v nvcc 2>/dev/null || { test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc; })
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
OPT      ?= -O2
SAN      ?=
CFLAGS   += -std=c11 $(OPT) -g -Wall -Wextra -Wno-unused-parameter -Wshadow -D_GNU_SOURCE \
            -Iinclude -Isrc -pthread $(SAN)
LDLIBS   += -lcjson -lpcre2-8 -lutf8proc -ljpeg -lpng -lwebp -lgif -lsnappy -lzstd -lm -pthread
LDFLAGS  += $(SAN)

LIB_SRC  := $(shell find src -name '*.c' -not -path 'src/cli/*' | sort)
CLI_SRC  := $(sort $(wildcard src/cli/*.c))
# MPI (`mpirun -np N qvl eval`): src/cli/eval_mpi.c when Open MPI's development package is found
# (pkg-config ompi-c; NO_MPI=1 builds without), else src/cli/eval_mpi_none.c. `qvl --version` says which.
MPI_FOUND := $(if $(NO_MPI),,$(shell pkg-config --exists ompi-c 2>/dev/null && echo yes))
ifeq ($(MPI_FOUND),yes)
CLI_SRC  := $(filter-out src/cli/eval_mpi_none.c,$(CLI_SRC))
MPI_LIBS := $(shell pkg-config --libs ompi-c)
$(BUILD)/src/cli/eval_mpi.o: CFLAGS += $(shell pkg-config --cflags ompi-c)
else
CLI_SRC  := $(filter-out src/cli/eval_mpi.c,$(CLI_SRC))
endif
TEST_SRC := $(sort $(wildcard tests/*.c))
CU_SRC   := $(shell find src/backend/cuda -name '*.cu' 2>/dev/null | sort)
TOKENIZER_JSON := models/tokenizer/tokenizer.json
# Large files git stores xz-compressed (unpacked by the rule below; tools/unpack_xz.py for Python tools).
UNPACKED := $(TOKENIZER_JSON) models/qvl-tiny-ocr/model.safetensors

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)

# The CUDA backend is compiled whenever nvcc exists (CI compiles it without a GPU).
ifneq ($(NVCC),)
ifeq ($(NO_CUDA),)
CU_OBJ   := $(CU_SRC:%.cu=$(BUILD)/%.o)
CFLAGS   += -DQVL_CUDA=1
NVFLAGS  ?= -O2 -std=c++17 -Iinclude -Isrc -DQVL_CUDA=1 \
            -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90a,code=sm_90a -DQVL_SM90A=1
LDLIBS   += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublasLt -lcublas -lcudart -lstdc++
endif
endif

.PHONY: all deps test test-asan clean bench demo test-gpu fuzz fuzz-build fuzz-bins
all: deps $(UNPACKED) $(BUILD)/qvl $(BUILD)/libqvl.a

# Every compile and every unpacked file waits for the dependency step (order-only: a newer stamp
# never forces a rebuild), so `make -j` on a fresh machine never compiles before the headers exist.
DEPS_OK  := $(BUILD)/.deps-ok
INSTALL_DEPS ?= scripts/install-deps.sh
deps: $(DEPS_OK)
$(DEPS_OK): scripts/install-deps.sh
	@mkdir -p $(BUILD)
	@bash $(INSTALL_DEPS)
	@touch $@

# The real Qwen3 tokenizer (11.4 MB -> 1.4 MB) and the bundled tiny OCR model's checkpoint
# (24.7 MB -> 8.8 MB) are stored xz-compressed to keep the tree small (the working tree that travels
# to the GPU machine is capped at 64 MiB); unpacked here (tools/unpack_xz.py does the same for
# Python tools). The temporary name is unique so parallel builds in other BUILD dirs never see a
# partial file.
$(UNPACKED): %: %.xz | $(DEPS_OK)
	xz -dc $< > $@.tmp.$$$$ && mv -f $@.tmp.$$$$ $@

$(BUILD)/libqvl.a: $(LIB_OBJ) $(CU_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/qvl: $(CLI_OBJ) $(BUILD)/libqvl.a
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libqvl.a $(LDLIBS) $(MPI_LIBS)

$(BUILD)/qvl-tests: $(TEST_OBJ) $(BUILD)/libqvl.a
	$(CC) $(LDFLAGS) -o $@ $(TEST_OBJ) $(BUILD)/libqvl.a $(LDLIBS)

$(BUILD)/%.o: %.c | $(DEPS_OK)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/%.o: %.cu | $(DEPS_OK)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -c $< -o $@

# The official OpenAI client for node (tests/serve/, run by tests/test_serve_openai.c), installed
# from the committed package-lock.json; npm writes node_modules/.package-lock.json last.
NODE_CLIENT := tests/serve/node_modules/.package-lock.json
$(NODE_CLIENT): tests/serve/package.json tests/serve/package-lock.json | $(DEPS_OK)
	cd tests/serve && npm ci --no-audit --no-fund --loglevel=error

# Tests run from the repository root; QVL_BIN lets CLI tests call the binary of this build.
test: deps $(UNPACKED) $(NODE_CLIENT) $(BUILD)/qvl $(BUILD)/qvl-tests
	QVL_BIN=$(BUILD)/qvl $(BUILD)/qvl-tests $(T)

test-asan: $(UNPACKED) $(NODE_CLIENT)
	$(MAKE) BUILD=build-asan OPT=-O1 NO_CUDA=1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" test

# libFuzzer harnesses (tests/fuzz/fuzz_NAME.c, seeds in tests/fuzz/NAME/, docs/testing.md): clang
# compiles the library again into FUZZ_BUILD with -fsanitize=fuzzer-no-link + ASan + UBSan, and each
# harness links with -fsanitize=fuzzer. `make fuzz` runs every harness (or those named in FUZZ) for
# FUZZ_SECONDS each; new corpus entries go to FUZZ_BUILD/corpus/NAME, findings to FUZZ_BUILD/findings.
FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_NAMES   := $(patsubst tests/fuzz/fuzz_%.c,%,$(sort $(wildcard tests/fuzz/fuzz_*.c)))

fuzz-build: $(UNPACKED)
	@bash $(INSTALL_DEPS) --fuzz
	$(MAKE) BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) OPT=-O1 NO_CUDA=1 NO_MPI=1 \
	    SAN="-fsanitize=fuzzer-no-link $(FUZZ_SAN)" fuzz-bins

fuzz-bins: $(FUZZ_NAMES:%=$(BUILD)/fuzz/%)
# The harness objects are kept (not removed as intermediates), so a rebuild compiles only what changed.
.SECONDARY: $(FUZZ_NAMES:%=$(BUILD)/tests/fuzz/fuzz_%.o) $(BUILD)/tests/fuzz/common.o

$(BUILD)/fuzz/%: $(BUILD)/tests/fuzz/fuzz_%.o $(BUILD)/tests/fuzz/common.o $(BUILD)/libqvl.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -fsanitize=fuzzer -o $@ $< $(BUILD)/tests/fuzz/common.o $(BUILD)/libqvl.a $(LDLIBS)

fuzz: fuzz-build
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ)

# GPU tests (tests/gpu/, their own binary; they need a CUDA device) and the GPU benchmark
# (bench/bench_gpu.c: qvl side; bench/bench_gpu_ref.py: transformers side).
# tests/gpu/*.cu: the kernel test harness's device side (tests/gpu/backend_ops_cuda.cu), compiled by nvcc.
GPU_TEST_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(sort $(wildcard tests/gpu/*.c))) $(BUILD)/tests/test_main.o \
                $(patsubst %.cu,$(BUILD)/%.o,$(sort $(wildcard tests/gpu/*.cu)))

$(BUILD)/qvl-gpu-tests: $(GPU_TEST_OBJ) $(BUILD)/libqvl.a
	$(CC) $(LDFLAGS) -o $@ $(GPU_TEST_OBJ) $(BUILD)/libqvl.a $(LDLIBS)

test-gpu: deps $(UNPACKED) $(BUILD)/qvl $(BUILD)/qvl-gpu-tests
	QVL_BIN=$(BUILD)/qvl $(BUILD)/qvl-gpu-tests $(T)

$(BUILD)/bench_gpu: $(BUILD)/bench/bench_gpu.o $(BUILD)/libqvl.a
	$(CC) $(LDFLAGS) -o $@ $< $(BUILD)/libqvl.a $(LDLIBS)

# Load benchmark of a running `qvl serve` (bench/bench_serve.c, bench/README.md): an HTTP client only.
$(BUILD)/bench_serve: $(BUILD)/bench/bench_serve.o
	$(CC) $(LDFLAGS) -o $@ $< -lcjson -lpng -lm -pthread

bench: deps $(BUILD)/bench_gpu $(BUILD)/bench_serve

# The README's main command: the whole pipeline on the bundled default.
demo: all $(UNPACKED)
	bash scripts/demo.sh $(BUILD)/qvl

clean:
	rm -rf build build-*

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(wildcard $(BUILD)/tests/fuzz/*.d) $(filter %.d,$(GPU_TEST_OBJ:.o=.d))
