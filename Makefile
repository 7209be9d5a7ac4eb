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
TOOLS     = ddpm-forward ddpm-bench ddpm-sample ddpm-npz ddpm-train ddpm-eval ddpm-convert
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
	$(PYTHON) tests/reference/gen_torchrng_fixtures.py --check
	$(PYTHON) tests/reference/gen_convert_fixtures.py --check
	$(PYTHON) tests/reference/gen_eval_fixtures.py --check
	$(PYTHON) tests/reference/gen_pt_fixtures.py --check
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

clean:
	rm -rf build build-asan build-fuzz
