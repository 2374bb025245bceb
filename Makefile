# Galleon: thin wrapper over CMake.
#   make          build build/libgalleon.so and build/libgalleon.a
#   make test     build and run the whole test suite: normal build, then the test
#                 programs under ASan+UBSan, then the thread tests under TSan
#   make run      the main job: a real workload under the system malloc and Galleon
#   make bench    the side-by-side benchmark against glibc, jemalloc, tcmalloc, mimalloc
#   make install  PREFIX=/usr/local
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
PREFIX ?= /usr/local
CMAKE ?= cmake
CTEST_FLAGS ?= --output-on-failure

.PHONY: all build test test-normal test-asan test-tsan test-debug run bench install clean

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

test: test-normal test-debug test-asan test-tsan

run: build
	bench/main-job build/libgalleon.so

bench: build
	bench/run

install: build
	$(CMAKE) --install build

clean:
	rm -rf build build-debug build-asan build-tsan
