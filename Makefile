# Galleon: thin wrapper over CMake.
#   make          build build/libgalleon.so and build/libgalleon.a
#   make test     build and run the whole test suite: normal build, then the test
#                 programs under ASan+UBSan, then the thread tests under TSan
#   make run      the main job: a real workload under the system malloc and Galleon
#   make bench    the side-by-side benchmark against glibc, jemalloc, tcmalloc, mimalloc
#   make install  PREFIX=/usr/local (library, header, the galleon command, man pages)
#   make check-man  the man pages (man/) format without a groff warning and document
#                 every function, option and command (also the CTest test man_pages)
#   make fuzz     SECONDS=N: build the libFuzzer target (tests/fuzz) with clang in
#                 build-fuzz/ and fuzz the galleon_* API for N seconds (default 60)
#   make deb      Debian packages (debian/) built from a copy of the tree in
#                 build-deb/src: build-deb/*.deb, checked by lintian
#   make test-package  install those .debs into a scratch root and check them
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
PREFIX ?= /usr/local
CMAKE ?= cmake
CTEST_FLAGS ?= --output-on-failure

.PHONY: all build test test-normal test-asan test-tsan test-debug run bench install clean
.PHONY: fuzz fuzz-replay test-fuzz

all: build

build:
	$(CMAKE) -S . -B build -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=$(PREFIX)
	$(CMAKE) --build build -j $(JOBS)

test-normal: build
	cd build && ctest $(CTEST_FLAGS) -j $(JOBS)

test-debug:
	$(CMAKE) -S . -B build-debug -DCMAKE_BUILD_TYPE=Debug -DGALLEON_BUILD_BENCH=OFF
	$(CMAKE) --build build-debug -j $(JOBS)
	cd build-debug && ctest $(CTEST_FLAGS) -j $(JOBS) -LE real

test-asan:
	$(CMAKE) -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGALLEON_SANITIZE=address -DGALLEON_DEBUG_CHECKS=ON
	$(CMAKE) --build build-asan -j $(JOBS)
	cd build-asan && ctest $(CTEST_FLAGS) -j $(JOBS)

test-tsan:
	$(CMAKE) -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGALLEON_SANITIZE=thread
	$(CMAKE) --build build-tsan -j $(JOBS)
	cd build-tsan && ctest $(CTEST_FLAGS) -j $(JOBS)

test: test-normal test-debug test-asan test-tsan test-fuzz

run: build
	bench/main-job build/libgalleon.so

bench: build
	bench/run

# ---- libFuzzer target over the galleon_* API (tests/fuzz/README.md) ----
# The allocator sources are GALLEON_SOURCES of CMakeLists.txt (no override.c: the
# system malloc stays libFuzzer's), compiled with the library's flags
# (GALLEON_LIB_FLAGS) plus the fuzzer and UBSan instrumentation and the debug checks.
FUZZ_CC ?= $(shell command -v clang >/dev/null 2>&1 && echo clang || echo clang-14)
FUZZ_DIR ?= build-fuzz
SECONDS ?= 60
FUZZ_SOURCES := $(shell sed -n '/^set(GALLEON_SOURCES/,/)/p' CMakeLists.txt | grep -o 'src/[a-z_]*\.c')
FUZZ_LIB_FLAGS := $(shell sed -n '/^set(GALLEON_LIB_FLAGS/,/)/p' CMakeLists.txt | grep -o -- '-f[a-z=-]*')
FUZZ_CFLAGS ?= -std=gnu11 -O1 -g -fno-omit-frame-pointer -Wall -Wextra -Wno-unused-parameter \
  -fsanitize=fuzzer,undefined -fno-sanitize-recover=undefined -DGALLEON_DEBUG=1
FUZZ_EXTRA ?=
FUZZ_FLAGS ?= -max_len=4096 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
  -artifact_prefix=$(FUZZ_DIR)/

$(FUZZ_DIR)/fuzz_api: tests/fuzz/fuzz_api.c $(FUZZ_SOURCES) $(wildcard src/*.h) include/galleon.h CMakeLists.txt
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_EXTRA) $(FUZZ_LIB_FLAGS) -Iinclude -Isrc -o $@ tests/fuzz/fuzz_api.c $(FUZZ_SOURCES) -lpthread

# Fuzz on a copy of the committed corpus (build-fuzz/corpus, kept between runs),
# one process on one core.
fuzz: $(FUZZ_DIR)/fuzz_api
	mkdir -p $(FUZZ_DIR)/corpus
	cp tests/fuzz/corpus/* $(FUZZ_DIR)/corpus/
	$(FUZZ_DIR)/fuzz_api $(FUZZ_FLAGS) -max_total_time=$(SECONDS) $(FUZZ_DIR)/corpus

# Replay every committed input once, then fuzz for 60 s; then the same for the
# secure build's sources (GALLEON_SECURE=1, in build-fuzz-secure), 30 s.
test-fuzz:
	$(MAKE) fuzz-replay fuzz SECONDS=60
	$(MAKE) fuzz-replay fuzz SECONDS=30 FUZZ_DIR=build-fuzz-secure FUZZ_EXTRA=-DGALLEON_SECURE=1

fuzz-replay: $(FUZZ_DIR)/fuzz_api
	$(FUZZ_DIR)/fuzz_api $(FUZZ_FLAGS) tests/fuzz/corpus/*

install: build
	$(CMAKE) --install build

.PHONY: check-man
check-man:
	python3 tests/tool/check_man.py .

clean:
	rm -rf build build-debug build-asan build-tsan

# ---- Debian packages (debian/, tests/package/) ----
# test-package reuses build-deb/*.deb while they match the tree, else builds them.
# Both install the Debian packages they need (debhelper, lintian, ...) if missing.
DEB_DIR ?= build-deb
.PHONY: deb test-package

deb:
	tests/package/build_deb.sh $(DEB_DIR)

test-package:
	tests/package/test_package.sh $(DEB_DIR)
