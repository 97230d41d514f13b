# edgeproxy: one build for everything.
#   make            build/edgeproxy
#   make run        deps + local Redis + demo sandbox + proxy in the foreground
#   make egress-demo   (root) the egress filter in network namespaces: a sandbox,
#                   allowed and refused traffic, a policy tightened
#   make test       deps + build + unit tests + integration tests (ASan+UBSan binary)
#   make bench      side-by-side benchmark against nginx, HAProxy and h2o
#   make bench-tls  the same over HTTPS/1.1, h2, h2c, and TLS handshakes
#   make fuzz       libFuzzer harnesses, each for FUZZ_SECONDS

CC      ?= cc
LLHTTP_SRC := /usr/share/llhttp
LLHTTP_INC := /usr/share/include/llhttp

WARN    := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
CFLAGS  ?= -O2 -g
# llhttp ships in loose mode (e.g. any two bytes accepted after chunk data):
# strict mode is what stands between a client and request smuggling.
LLHTTP_DEFS := -DLLHTTP_STRICT_MODE=1
# llhttp scans header values and bodies 16 bytes at a time with SSE4.2 when
# the compiler may use it; the build host is the run host here.
LLHTTP_SIMD := $(shell grep -qw sse4_2 /proc/cpuinfo 2>/dev/null && echo -msse4.2)
CFLAGS  += -std=gnu11 -D_GNU_SOURCE -pthread $(WARN) $(LLHTTP_DEFS) $(SRC_DIRS:%=-I%) -I$(LLHTTP_INC)
LDLIBS  := -levent_core -levent_extra -levent_pthreads -lssl -lcrypto -lhiredis -lcjson -lnghttp2 -lpthread
# nghttp2: Debian's 1.52 backports the rapid-reset (CVE-2023-44487) and
# CONTINUATION (CVE-2024-28182) limits without changing its version number,
# so each is detected by symbol: a tiny program that takes its address must
# compile (the header declares it) and link (the library has it).
HASH := \#
nghttp2_has = $(shell printf '$(HASH)include <nghttp2/nghttp2.h>\nint main(void) { return (int)(long)&$(1); }\n' | \
                $(CC) -x c - -o /dev/null -lnghttp2 >/dev/null 2>&1 && echo -DHAVE_$(2))
NGHTTP2_DEFS := $(call nghttp2_has,nghttp2_option_set_stream_reset_rate_limit,NGHTTP2_STREAM_RESET_RATE_LIMIT) \
                $(call nghttp2_has,nghttp2_option_set_max_continuations,NGHTTP2_MAX_CONTINUATIONS)
CFLAGS  += $(NGHTTP2_DEFS)

# common/ is pure (no event loop); the daemon's layers are the other folders
# (the README's architecture section says what each holds and may call).
LAYER_DIRS := core http1 http2 ingress redis admin egress
SRC_DIRS   := common $(LAYER_DIRS)
COMMON_SRC := $(wildcard common/*.c)
PROXY_SRC  := $(foreach d,$(LAYER_DIRS),$(wildcard $(d)/*.c))
HEADERS    := $(foreach d,$(SRC_DIRS),$(wildcard $(d)/*.h))
LLHTTP_C   := $(LLHTTP_SRC)/llhttp.c $(LLHTTP_SRC)/api.c $(LLHTTP_SRC)/http.c

BUILD := build
SAN   := $(BUILD)/san
OBJ_COMMON := $(COMMON_SRC:%.c=$(BUILD)/obj/%.o)
OBJ_PROXY  := $(PROXY_SRC:%.c=$(BUILD)/obj/%.o)
OBJ_LLHTTP := $(BUILD)/obj/llhttp/llhttp.o $(BUILD)/obj/llhttp/api.o $(BUILD)/obj/llhttp/http.o
SAN_FLAGS  := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
# The objects of an instrumented build in directory $(1).
inst_objs   = $(COMMON_SRC:%.c=$(1)/obj/%.o) $(PROXY_SRC:%.c=$(1)/obj/%.o) \
              $(1)/obj/llhttp/llhttp.o $(1)/obj/llhttp/api.o $(1)/obj/llhttp/http.o
SAN_OBJ    := $(call inst_objs,$(SAN))

# ThreadSanitizer build (make tsan): the integration suite against it. Not
# part of make test (it doubles the time), but it must pass.
TSAN       := $(BUILD)/tsan
TSAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=thread

UNIT_SRC   := $(wildcard test/unit/test_*.c)
UNIT_BIN   := $(UNIT_SRC:test/unit/%.c=$(BUILD)/test/%)

PYTHON ?= /usr/bin/python3

.PHONY: all deps run egress-demo test unit integration sanitize tsan bench bench-tls fuzz clean format

all: $(BUILD)/edgeproxy

$(BUILD)/edgeproxy: $(OBJ_COMMON) $(OBJ_PROXY) $(OBJ_LLHTTP)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/obj/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

# llhttp is generated code: build it as shipped, without our warning set.
$(BUILD)/obj/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -g $(LLHTTP_DEFS) $(LLHTTP_SIMD) -I$(LLHTTP_INC) -c -o $@ $<

# An instrumented build: $(1)/edgeproxy and its objects, compiled with the
# flags $(2) (llhttp as shipped, without our warning set).
define inst_build
$(1)/edgeproxy: $(call inst_objs,$(1))
	$$(CC) $$(CFLAGS) $(2) -o $$@ $$^ $$(LDLIBS)

$(1)/obj/%.o: %.c $$(HEADERS)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(CFLAGS) $(2) -c -o $$@ $$<

$(1)/obj/llhttp/%.o: $$(LLHTTP_SRC)/%.c
	@mkdir -p $$(dir $$@)
	$$(CC) -O1 -g $(2) $$(LLHTTP_DEFS) -I$$(LLHTTP_INC) -c -o $$@ $$<
endef

# The sanitizer build the integration tests run against.
$(eval $(call inst_build,$(SAN),$(SAN_FLAGS)))
sanitize: $(SAN)/edgeproxy

$(eval $(call inst_build,$(TSAN),$(TSAN_FLAGS)))

# The harness fails a test on any "WARNING: ThreadSanitizer" in the proxy's
# stderr and runs the proxy with test/tsan.supp (see harness.py).
tsan: $(TSAN)/edgeproxy
	EDGEPROXY_BIN=$(TSAN)/edgeproxy $(PYTHON) -m pytest -q -p no:cacheprovider test/integration

# Unit tests: one binary per test/unit/test_<module>.c, linked with common/
# and with the proxy's modules through an archive, so a test pulls in only the
# objects it references (and a test that includes a .c file, as test_head.c
# does, keeps its own copy). Built with sanitizers too: the ugly inputs are
# the point.
SAN_LIB := $(SAN)/libedgeproxy.a
$(SAN_LIB): $(filter-out $(SAN)/obj/core/main.o,$(SAN_OBJ))
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/test/%: test/unit/%.c $(SAN_LIB) $(wildcard test/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN_FLAGS) -o $@ $< $(filter $(SAN)/obj/common/%,$(SAN_OBJ)) $(SAN_LIB) -lcmocka $(LDLIBS)

deps:
	@sh scripts/deps.sh

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

integration: $(BUILD)/edgeproxy $(SAN)/edgeproxy
	EDGEPROXY_BIN=$(SAN)/edgeproxy $(PYTHON) -m pytest -q -p no:cacheprovider test/integration

test: deps
	$(MAKE) all
	$(MAKE) unit
	$(MAKE) integration

run: deps all
	@sh scripts/run-demo.sh

# Needs root (network namespaces, nftables): sudo make egress-demo. Checked
# first; the script builds build/edgeproxy itself (as the sudo user).
egress-demo:
	@[ "$$(id -u)" -eq 0 ] || { echo "egress-demo: needs root (network namespaces and nftables): run 'sudo make egress-demo'" >&2; exit 1; }
	@sh scripts/deps.sh
	@bash scripts/egress-demo.sh

bench: deps all
	@bash bench/run.sh

bench-tls: deps all
	@TOOLS="$${TOOLS:-https h2 h2c handshake}" MEMORY="$${MEMORY:-0}" bash bench/run.sh

FUZZ_SECONDS ?= 60
fuzz:
	@bash test/fuzz/run.sh $(FUZZ_SECONDS)

format:
	clang-format -i $(foreach d,$(SRC_DIRS),$(d)/*.[ch]) test/*.h test/unit/*.c test/fuzz/*.c

clean:
	rm -rf $(BUILD)
