# mmkit - GNU make build.  `make help` lists the targets.
VERSION     := 0.1.0
SOVERSION   := 0
PREFIX      ?= /usr/local
LIBDIR      ?= $(PREFIX)/lib
INCLUDEDIR  ?= $(PREFIX)/include
BINDIR      ?= $(PREFIX)/bin
MANDIR      ?= $(PREFIX)/share/man
DESTDIR     ?=

CC          ?= cc
CFLAGS      ?= -O2 -g
B           ?= build
SAN         ?=

WARN   := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
BASE   := -std=gnu11 -D_GNU_SOURCE -pthread -Iinclude -Isrc $(WARN)
ifeq ($(SAN),1)
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
endif
ALL_CFLAGS  := $(BASE) $(CFLAGS) $(SANFLAGS)
LIB_CFLAGS  := $(ALL_CFLAGS) -fPIC -fvisibility=hidden
LDLIBS      := -pthread

# Evaluated when the recipe runs, after `deps` may have installed Criterion.
CRIT_CFLAGS = $$(pkg-config --cflags criterion)
CRIT_LIBS   = $$(pkg-config --libs criterion)

LIB_SRC  := $(sort $(wildcard src/*.c))
LIB_OBJ  := $(LIB_SRC:src/%.c=$(B)/obj/%.o)
SRV_SRC  := $(sort $(wildcard src/server/*.c))
SRV_OBJ  := $(SRV_SRC:src/server/%.c=$(B)/obj/server/%.o)
TOOL_SRC := $(sort $(wildcard tools/*.c))
TOOL_OBJ := $(TOOL_SRC:tools/%.c=$(B)/obj/tools/%.o)
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TESTS    := $(TEST_SRC:tests/%.c=$(B)/tests/%)
HELPER_SRC := $(sort $(wildcard tests/helper_*.c))
HELPERS  := $(HELPER_SRC:tests/%.c=$(B)/tests/%)
BENCH_SRC:= $(sort $(wildcard bench/*.c))
BENCHES  := $(BENCH_SRC:bench/%.c=$(B)/bench/%)
EX_SRC   := $(sort $(wildcard examples/*.c))
EXAMPLES := $(EX_SRC:examples/%.c=$(B)/examples/%)

STATIC   := $(B)/libmmkit.a
SHARED   := $(B)/libmmkit.so.$(VERSION)
CLI      := $(B)/mmkit

.PHONY: all lib test test-asan bench demo examples install uninstall clean deps help fuzz FORCE
all: lib $(CLI) examples

lib: $(STATIC) $(SHARED)

help:
	@echo "make            build the libraries, the mmkit CLI and the examples into $(B)/"
	@echo "make demo       build and run the guided tour (mmkit demo)"
	@echo "make test       build and run every test; ends with 'N passed, N failed'"
	@echo "make test-asan  the same under AddressSanitizer + UBSan (into build-asan/)"
	@echo "make bench      build and run the benchmarks"
	@echo "make install    install under PREFIX (default /usr/local), honours DESTDIR"
	@echo "make fuzz       libFuzzer on mmkitd's message and HTTP parsers, FUZZ_TIME s each (clang)"

$(B)/obj/%.o: src/%.c include/mmkit.h $(wildcard src/*.h) | $(B)/obj
	$(CC) $(LIB_CFLAGS) -c $< -o $@

$(B)/obj/tools/%.o: tools/%.c include/mmkit.h $(wildcard tools/*.h) | $(B)/obj/tools
	$(CC) $(ALL_CFLAGS) -Itools -c $< -o $@

# The daemon (mmkit server): not part of libmmkit, linked into the CLI.
$(B)/obj/server/%.o: src/server/%.c include/mmkit.h $(wildcard src/*.h src/server/*.h) | $(B)/obj/server
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(B)/obj $(B)/obj/tools $(B)/obj/server $(B)/tests $(B)/bench $(B)/examples:
	@mkdir -p $@

$(STATIC): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(SHARED): $(LIB_OBJ) src/libmmkit.map
	$(CC) -shared $(ALL_CFLAGS) -Wl,-soname,libmmkit.so.$(SOVERSION) \
	    -Wl,--version-script=src/libmmkit.map -o $@ $(LIB_OBJ) $(LDLIBS)
	ln -sf libmmkit.so.$(VERSION) $(B)/libmmkit.so.$(SOVERSION)
	ln -sf libmmkit.so.$(SOVERSION) $(B)/libmmkit.so

$(CLI): $(TOOL_OBJ) $(SRV_OBJ) $(STATIC)
	$(CC) $(ALL_CFLAGS) -o $@ $(TOOL_OBJ) $(SRV_OBJ) $(STATIC) $(LDLIBS)

# Helper programs that tests exec: plain programs, no test framework.
$(B)/tests/helper_%: tests/helper_%.c $(STATIC) | $(B)/tests
	$(CC) $(ALL_CFLAGS) -Itests -o $@ $< $(STATIC) $(LDLIBS)

# Tests link the static library, so they may also reach mmk__ internals.
$(B)/tests/%: tests/%.c $(STATIC) $(wildcard tests/*.h) | deps $(B)/tests
	$(CC) $(ALL_CFLAGS) $(CRIT_CFLAGS) -Itests -o $@ $< $(STATIC) $(CRIT_LIBS) $(LDLIBS)

# This one compiles the server's event stream and segment table in.
$(B)/tests/test_server_events: $(SRV_SRC) $(wildcard src/server/*.h)

$(B)/bench/%: bench/%.c $(STATIC) $(wildcard bench/*.h) | deps $(B)/bench
	$(CC) $(ALL_CFLAGS) -Ibench -o $@ $< $(STATIC) -lsigsegv $(LDLIBS) -lm

$(B)/examples/%: examples/%.c $(STATIC) | $(B)/examples
	$(CC) $(ALL_CFLAGS) -o $@ $< $(STATIC) $(LDLIBS)

examples: $(EXAMPLES)

# Debian packages the tests and benchmarks need.  As root they are installed;
# otherwise the exact apt-get line is printed and the build stops.
deps:
	@sh tools/deps.sh

test: lib $(CLI) $(TESTS) $(HELPERS) $(EXAMPLES)
	@sh tests/run.sh $(B)

# mmkit owns SIGSEGV/SIGBUS in these tests, so ASan must leave them alone.
test-asan:
	@ASAN_OPTIONS=handle_segv=0:handle_sigbus=0:allow_user_segv_handler=1:detect_leaks=1 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	$(MAKE) --no-print-directory B=build-asan SAN=1 CFLAGS="-O1 -g" test

# libFuzzer on the server's message parser (clang from Debian), bounded in time.
FUZZ_TIME ?= 60
FUZZ_CC   ?= clang
$(B)/fuzz/proto: fuzz/proto.c src/proto.c src/proto.h include/mmkit.h
	@mkdir -p $(B)/fuzz/corpus
	$(FUZZ_CC) -std=gnu11 -D_GNU_SOURCE -Iinclude -Isrc -g -O1 \
	    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -o $@ fuzz/proto.c src/proto.c

$(B)/fuzz/http: fuzz/http.c src/server/http_parse.c src/server/http.h src/proto.c
	@mkdir -p $(B)/fuzz/corpus-http
	$(FUZZ_CC) -std=gnu11 -D_GNU_SOURCE -Iinclude -Isrc -g -O1 \
	    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -o $@ fuzz/http.c src/server/http_parse.c src/proto.c

fuzz: $(B)/fuzz/proto $(B)/fuzz/http
	$(B)/fuzz/proto -max_total_time=$(FUZZ_TIME) -max_len=70000 -timeout=10 $(B)/fuzz/corpus fuzz/corpus
	$(B)/fuzz/http -max_total_time=$(FUZZ_TIME) -max_len=12000 -timeout=10 $(B)/fuzz/corpus-http fuzz/corpus-http

bench: $(BENCHES)
	@sh bench/run.sh $(B)

demo: $(CLI)
	@$(CLI) demo

# Rebuilt on every run: the paths in it depend on PREFIX/LIBDIR/INCLUDEDIR,
# which may differ from one `make install` to the next.
FORCE:
$(B)/mmkit.pc: mmkit.pc.in Makefile FORCE
	@mkdir -p $(B)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(VERSION)|' $< > $(B)/mmkit.pc

install: lib $(CLI) $(B)/mmkit.pc
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man3
	install -m 644 include/mmkit.h $(DESTDIR)$(INCLUDEDIR)/
	install -m 644 $(STATIC) $(DESTDIR)$(LIBDIR)/
	install -m 755 $(SHARED) $(DESTDIR)$(LIBDIR)/
	ln -sf libmmkit.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libmmkit.so.$(SOVERSION)
	ln -sf libmmkit.so.$(SOVERSION) $(DESTDIR)$(LIBDIR)/libmmkit.so
	install -m 644 $(B)/mmkit.pc $(DESTDIR)$(LIBDIR)/pkgconfig/
	install -m 755 $(CLI) $(DESTDIR)$(BINDIR)/
	install -m 644 docs/man/*.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 644 docs/man/*.3 $(DESTDIR)$(MANDIR)/man3/

uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/mmkit.h $(DESTDIR)$(LIBDIR)/libmmkit.* \
	    $(DESTDIR)$(LIBDIR)/pkgconfig/mmkit.pc $(DESTDIR)$(BINDIR)/mmkit
	rm -f $(patsubst docs/man/%,$(DESTDIR)$(MANDIR)/man1/%,$(wildcard docs/man/*.1))
	rm -f $(patsubst docs/man/%,$(DESTDIR)$(MANDIR)/man3/%,$(wildcard docs/man/*.3))

clean:
	rm -rf build build-asan
