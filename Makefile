# guided-diffusion in C. `make` builds build/libgd.a and the tools; `make test` runs every test.
CC      ?= gcc
PYTHON  ?= /usr/bin/python3
OPT     ?= -O3 -march=native
CFLAGS  ?= $(OPT)
CFLAGS  += -std=c11 -fno-math-errno -D_DEFAULT_SOURCE -Wall -Wextra -Wno-unused-parameter -fopenmp -Iinclude -Isrc
# OpenBLAS's OpenMP build shares our OpenMP thread pool; the pthread build's spinning workers
# fight the OpenMP loops between GEMMs for the same cores (measured: element-wise ops 15x slower).
BLASDIR ?= /usr/lib/x86_64-linux-gnu/openblas-openmp
LDLIBS  = -L$(BLASDIR) -Wl,-rpath,$(BLASDIR) -llapacke -lopenblas -lcjson -lz -lm
BUILD   ?= build

# The library's layers, lowest first (tests/test_layers.c checks that no file includes a header of
# a higher layer); src/cli/ holds the tools and their one shared module.
LAYERS    = util core io nn diffusion eval train
LIB_SRC   = $(foreach l,$(LAYERS),$(wildcard src/$(l)/*.c))
LIB_OBJ   = $(LIB_SRC:src/%.c=$(BUILD)/obj/%.o)
CLI_SRC   = $(filter-out src/cli/ddpm-%.c,$(wildcard src/cli/*.c))
CLI_OBJ   = $(CLI_SRC:src/%.c=$(BUILD)/obj/%.o)
HEADERS   = $(wildcard include/*.h src/*/*.h)
TOOLS     = ddpm-forward ddpm-bench ddpm-sample ddpm-npz ddpm-train ddpm-eval ddpm-convert ddpm-quantize
TEST_SRC  = $(wildcard tests/test_*.c) tests/cli_util.c

.PHONY: all ref test check-fixtures bench fuzz asan clean
all: $(BUILD)/libgd.a $(TOOLS:%=$(BUILD)/%)

$(BUILD)/obj/%.o: src/%.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libgd.a: $(LIB_OBJ)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/%: src/cli/%.c $(CLI_OBJ) $(BUILD)/libgd.a
	$(CC) $(CFLAGS) $< $(CLI_OBJ) $(BUILD)/libgd.a $(LDFLAGS) $(LDLIBS) -o $@

$(BUILD)/gd-tests: $(TEST_SRC) tests/test.h tests/cli_util.h $(CLI_OBJ) $(BUILD)/libgd.a
	$(CC) $(CFLAGS) $(TEST_SRC) $(CLI_OBJ) $(BUILD)/libgd.a $(LDFLAGS) $(LDLIBS) -o $@

# Evaluator statistics of the Fashion-MNIST test set (ddpm-eval's default --ref); needs Debian's
# dataset-fashion-mnist.
ref: $(BUILD)/fashion_test_ref.safetensors
$(BUILD)/fashion_test_ref.safetensors: models/fashion_evaluator.safetensors | $(BUILD)/ddpm-eval
	./$(BUILD)/ddpm-eval -q --make-ref $@ fashion-mnist:test

test: all ref $(BUILD)/gd-tests
	./$(BUILD)/gd-tests

# Regenerates every PyTorch fixture in a temporary folder and compares it with tests/fixtures.
check-fixtures:
	$(PYTHON) tests/reference/gen_fixtures.py --check
	$(PYTHON) tests/reference/gen_traj_fixtures.py --check
	$(PYTHON) tests/reference/gen_solver_fixtures.py --check
	$(PYTHON) tests/reference/gen_torchrng_fixtures.py --check
	$(PYTHON) tests/reference/gen_convert_fixtures.py --check
	$(PYTHON) tests/reference/gen_eval_fixtures.py --check
	$(PYTHON) tests/reference/gen_pt_fixtures.py --check
	$(PYTHON) tests/reference/gen_inception_fixtures.py --check
	$(PYTHON) tests/reference/gen_npz_stream_fixtures.py --check
	$(PYTHON) tests/reference/gen_quant_fixtures.py --check
	d=$$(mktemp -d) && $(PYTHON) tests/reference/gen_rng_fixtures.py --out $$d/rng.safetensors >/dev/null && \
	    cmp $$d/rng.safetensors tests/fixtures/rng.safetensors && echo "OK   rng.safetensors identical"; rm -rf $$d

bench: all
	PYTHON=$(PYTHON) sh scripts/bench.sh

# Sanitized build of the library and tests in build-asan/.
asan:
	$(MAKE) BUILD=build-asan OPT="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer" \
	    LDFLAGS="-fsanitize=address,undefined" test

fuzz: build-fuzz/fuzz_safetensors build-fuzz/fuzz_pt
	mkdir -p build-fuzz/corpus && cp tests/data/malformed/* tests/data/*.safetensors build-fuzz/corpus/
	./build-fuzz/fuzz_safetensors -max_total_time=$${FUZZ_SECONDS:-60} build-fuzz/corpus
	mkdir -p build-fuzz/corpus_pt && cp tests/data/malformed_pt/*.pt tests/data/pt/*.pt tests/data/pt/*.pkl build-fuzz/corpus_pt/
	./build-fuzz/fuzz_pt -max_total_time=$${FUZZ_SECONDS:-60} build-fuzz/corpus_pt
	$(MAKE) build-fuzz/fuzz_npz && mkdir -p build-fuzz/corpus_npz && cp tests/data/fuzz/npz/* build-fuzz/corpus_npz/ && ./build-fuzz/fuzz_npz -max_total_time=$${FUZZ_SECONDS:-60} build-fuzz/corpus_npz
	$(MAKE) build-fuzz/fuzz_idx && mkdir -p build-fuzz/corpus_idx && cp tests/data/fuzz/idx/* build-fuzz/corpus_idx/ && ./build-fuzz/fuzz_idx -max_total_time=$${FUZZ_SECONDS:-60} build-fuzz/corpus_idx
	$(MAKE) build-fuzz/fuzz_image && mkdir -p build-fuzz/corpus_image && cp tests/data/fuzz/image/* build-fuzz/corpus_image/ && ./build-fuzz/fuzz_image -max_total_time=$${FUZZ_SECONDS:-60} build-fuzz/corpus_image
	$(MAKE) build-fuzz/fuzz_model_config && mkdir -p build-fuzz/corpus_mc && cp tests/data/fuzz/model_config/* build-fuzz/corpus_mc/ && ./build-fuzz/fuzz_model_config -max_total_time=$${FUZZ_SECONDS:-60} build-fuzz/corpus_mc
	$(MAKE) build-fuzz/fuzz_run_config && mkdir -p build-fuzz/corpus_rc && cp tests/data/fuzz/run_config/* build-fuzz/corpus_rc/ && ./build-fuzz/fuzz_run_config -max_total_time=$${FUZZ_SECONDS:-60} build-fuzz/corpus_rc

ST_FUZZ_SRC = tests/fuzz_safetensors.c src/io/safetensors_read.c src/io/safetensors.c src/util/errors.c src/util/map_file.c
build-fuzz/fuzz_safetensors: $(ST_FUZZ_SRC) src/io/safetensors.h include/gd_safetensors.h include/gd_util.h
	mkdir -p build-fuzz
	clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Isrc $(ST_FUZZ_SRC) -lcjson -o $@

# The .pt reader; zip CRC-32s are not checked in this build (FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION).
PT_FUZZ_SRC = tests/fuzz_pt.c src/io/pt.c src/io/pt_pickle.c src/io/zip.c src/io/safetensors_read.c src/io/safetensors.c \
              src/util/errors.c src/util/map_file.c
build-fuzz/fuzz_pt: $(PT_FUZZ_SRC) tests/pt_zip.h src/io/pt.h src/io/zip.h src/io/safetensors.h include/gd_pt.h \
                    include/gd_safetensors.h include/gd_util.h
	mkdir -p build-fuzz
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION \
	    -Iinclude -Isrc $(PT_FUZZ_SRC) -lcjson -lz -o $@

# The .npz reader (through a scratch file); zip CRC-32s are not checked, as for fuzz_pt.
NPZ_FUZZ_SRC = tests/fuzz_npz.c src/io/npz_read.c src/io/npz_stream.c src/io/npz_write.c src/io/zip.c src/util/errors.c src/util/atomic_file.c
build-fuzz/fuzz_npz: $(NPZ_FUZZ_SRC) tests/fuzz_util.h src/io/zip.h src/io/npy.h include/gd_image.h include/gd_util.h
	mkdir -p build-fuzz
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION \
	    -Iinclude -Isrc $(NPZ_FUZZ_SRC) -lz -o $@

# The dataset readers: IDX files (through scratch files), and the image-folder decoder with the
# stb_image it still uses (JPEG, BMP, GIF); OpenMP off.
IMG_FUZZ_SRC = src/io/image_decode.c src/io/png_read.c src/io/jpeg_check.c src/util/errors.c
IMG_FUZZ_DEP = $(IMG_FUZZ_SRC) tests/fuzz_util.h src/io/image_decode.h include/gd_util.h
IDX_FUZZ_SRC = tests/fuzz_idx.c src/io/dataset.c src/io/image_io.c src/util/atomic_file.c $(IMG_FUZZ_SRC)
build-fuzz/fuzz_idx: $(IDX_FUZZ_SRC) $(IMG_FUZZ_DEP) include/gd_dataset.h include/gd_image.h
	mkdir -p build-fuzz
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -std=c11 -D_DEFAULT_SOURCE -Wno-unknown-pragmas \
	    -Iinclude -Isrc $(IDX_FUZZ_SRC) -lz -lm -o $@
build-fuzz/fuzz_image: tests/fuzz_image.c $(IMG_FUZZ_DEP)
	mkdir -p build-fuzz
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -std=c11 -D_DEFAULT_SOURCE \
	    -Iinclude -Isrc tests/fuzz_image.c $(IMG_FUZZ_SRC) -lz -lm -o $@

# Model configs: gd_config_parse, the shapes-only network build behind it, and the converter's
# reading; the whole library below the diffusion layer, OpenMP off (one thread, same arithmetic).
MC_FUZZ_SRC = tests/fuzz_model_config.c $(foreach l,util core io nn,$(wildcard src/$(l)/*.c))
build-fuzz/fuzz_model_config: $(MC_FUZZ_SRC) $(HEADERS)
	mkdir -p build-fuzz
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -std=c11 -D_DEFAULT_SOURCE -Iinclude -Isrc \
	    $(MC_FUZZ_SRC) -L$(BLASDIR) -Wl,-rpath,$(BLASDIR) -lopenblas -lcjson -lz -lm -o $@

# ddpm-train's run config (and the model config inside it) and a checkpoint's log window.
RC_FUZZ_SRC = tests/fuzz_run_config.c src/train/run_config.c src/train/optim.c src/nn/config.c src/io/safetensors.c \
              src/io/safetensors_read.c src/io/safetensors_write.c src/util/errors.c src/util/map_file.c src/util/atomic_file.c
build-fuzz/fuzz_run_config: $(RC_FUZZ_SRC) $(HEADERS)
	mkdir -p build-fuzz
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -std=c11 -D_DEFAULT_SOURCE -Wno-unknown-pragmas \
	    -Iinclude -Isrc $(RC_FUZZ_SRC) -lcjson -lm -o $@

clean:
	rm -rf build build-asan build-fuzz
