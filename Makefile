# mmkit - GNU make build.  `make help` lists the targets.
# The version lives here.  include/mmkit.h repeats it as MMK_VERSION_*:
# src/error.c fails to build when the two disagree (see VERSION_DEFS), and
# tests/cli/symbols.sh checks the string too.
VERSION     := 0.1.0
SOVERSION   := 0
VERSION_NUMS := $(subst ., ,$(VERSION))
VERSION_DEFS := -DMMK_BUILD_VERSION_MAJOR=$(word 1,$(VERSION_NUMS)) \
                -DMMK_BUILD_VERSION_MINOR=$(word 2,$(VERSION_NUMS)) \
                -DMMK_BUILD_VERSION_PATCH=$(word 3,$(VERSION_NUMS)) \
                -DMMK_BUILD_VERSION_STRING='"$(VERSION)"'
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
# -Wcast-qual in the library only: a call that takes a const handle must not
# write through it (tests and demos cast on purpose, to provoke faults).
LIB_CFLAGS  := $(ALL_CFLAGS) -Wcast-qual -fPIC -fvisibility=hidden $(VERSION_DEFS)
LDLIBS      := -pthread
# Fault reports: frames are named with elfutils (libdw-dev); a dying process
# runs the installed `mmkit symbolize` (override: MMKIT_SYMBOLIZER=path).
LIB_CFLAGS  += -DMMK_DEFAULT_SYMBOLIZER='"$(BINDIR)/mmkit"'
LDLIBS      += -ldw -lelf

# Evaluated when the recipe runs, after `deps` may have installed Criterion.
CRIT_CFLAGS = $$(pkg-config --cflags criterion)
CRIT_LIBS   = $$(pkg-config --libs criterion)

LIB_SRC  := $(sort $(wildcard src/*.c))
LIB_OBJ  := $(LIB_SRC:src/%.c=$(B)/obj/%.o)
SRV_SRC  := $(sort $(wildcard src/server/*.c))
SRV_OBJ  := $(SRV_SRC:src/server/%.c=$(B)/obj/server/%.o)
# The HTTP feed's live page (src/server/page.html) and its library.
SRV_OBJ  += $(B)/obj/server/http_page.o
SRV_LIBS := -lmicrohttpd
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

.PHONY: all lib test test-asan bench demo examples install uninstall clean deps build-deps help fuzz FORCE
all: lib $(CLI) examples

lib: $(STATIC) $(SHARED)

help:
	@echo "make            build the libraries, the mmkit CLI and the examples into $(B)/"
	@echo "make demo       build and run the guided tour (mmkit demo)"
	@echo "make test       build and run every test; ends with 'N passed, N failed'"
	@echo "make test-asan  the same under AddressSanitizer + UBSan (into build-asan/)"
	@echo "make bench      build and run the benchmarks"
	@echo "make install    install under PREFIX (default /usr/local), honours DESTDIR"
	@echo "make fuzz       build the libFuzzer targets fuzz/*.c with clang, run each FUZZ_SECONDS"

$(B)/obj/%.o: src/%.c include/mmkit.h $(wildcard src/*.h) | $(B)/obj
	$(CC) $(LIB_CFLAGS) -c $< -o $@

# error.c checks the header's version against VERSION.
$(B)/obj/error.o: Makefile
# The fault reports' symbolizer needs elfutils' headers (libdw-dev).
$(B)/obj/symbolize.o: | build-deps
build-deps:
	@sh tools/deps.sh build

$(B)/obj/tools/%.o: tools/%.c include/mmkit.h $(wildcard tools/*.h) $(wildcard examples/*.h) | $(B)/obj/tools
	$(CC) $(ALL_CFLAGS) -Itools -c $< -o $@

# The daemon (mmkit server): not part of libmmkit, linked into the CLI.
$(B)/obj/server/%.o: src/server/%.c include/mmkit.h $(wildcard src/*.h src/server/*.h) | $(B)/obj/server
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(B)/obj $(B)/obj/tools $(B)/obj/server $(B)/tests $(B)/bench $(B)/examples:
	@mkdir -p $@

$(STATIC): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

# -z defs: a symbol the library uses but nothing defines fails the link,
# not the first program that loads it.
$(SHARED): $(LIB_OBJ) src/libmmkit.map
	$(CC) -shared $(ALL_CFLAGS) -Wl,-soname,libmmkit.so.$(SOVERSION) -Wl,-z,defs \
	    -Wl,--version-script=src/libmmkit.map -o $@ $(LIB_OBJ) $(LDLIBS)
	ln -sf libmmkit.so.$(VERSION) $(B)/libmmkit.so.$(SOVERSION)
	ln -sf libmmkit.so.$(SOVERSION) $(B)/libmmkit.so

$(CLI): $(TOOL_OBJ) $(SRV_OBJ) $(STATIC)
	$(CC) $(ALL_CFLAGS) -o $@ $(TOOL_OBJ) $(SRV_OBJ) $(STATIC) $(SRV_LIBS) $(LDLIBS)

# Helper programs that tests exec: plain programs, no test framework.
$(B)/tests/helper_%: tests/helper_%.c $(STATIC) | $(B)/tests
	$(CC) $(ALL_CFLAGS) -Itests -o $@ $< $(STATIC) $(LDLIBS)

# Tests link the static library, so they may also reach mmk__ internals.
$(B)/tests/%: tests/%.c $(STATIC) $(wildcard tests/*.h) | deps $(B)/tests
	$(CC) $(ALL_CFLAGS) $(CRIT_CFLAGS) -Itests -o $@ $< $(STATIC) $(CRIT_LIBS) $(LDLIBS)

# This one compiles the server's event stream and segment table in.
$(B)/tests/test_server_events: $(SRV_SRC) $(wildcard src/server/*.h)

$(B)/bench/%: bench/%.c $(STATIC) $(wildcard bench/*.h) $(wildcard examples/*.h) | deps $(B)/bench
	$(CC) $(ALL_CFLAGS) -Ibench -o $@ $< $(STATIC) -lsigsegv $(LDLIBS) -lm

$(B)/examples/%: examples/%.c $(STATIC) $(wildcard examples/*.h) | $(B)/examples
	$(CC) $(ALL_CFLAGS) -o $@ $< $(STATIC) $(LDLIBS)

examples: $(EXAMPLES)

# ---- HTTP push feed (src/server/http*.c) ------------------------------------
# GNU libmicrohttpd does the HTTP; the live page is embedded by http_page.S
# (.incbin, run from the top directory).  Test programs and helpers named
# test_http* / helper_http* link the feed too.
# http_srv.c is the glue to mmkitd (struct mmk__srv): the CLI has it, the
# feed's own tests and driver do not.
HTTP_SRC := $(filter-out src/server/http_srv.c,$(sort $(wildcard src/server/http*.c)))
HTTP_COBJ := $(HTTP_SRC:src/server/%.c=$(B)/obj/server/%.o)
HTTP_OBJ := $(HTTP_COBJ) $(B)/obj/server/http_page.o
HTTP_LIBS := -lmicrohttpd

$(HTTP_COBJ): $(B)/obj/server/%.o: src/server/%.c include/mmkit.h src/sys.h $(wildcard src/server/http*.h) | deps $(B)/obj/server
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(B)/obj/server/http_page.o: src/server/http_page.S src/server/page.html | $(B)/obj/server
	$(CC) -c $< -o $@

$(B)/tests/test_http%: tests/test_http%.c $(HTTP_OBJ) $(STATIC) $(wildcard tests/*.h) | deps $(B)/tests
	$(CC) $(ALL_CFLAGS) $(CRIT_CFLAGS) -Itests -Isrc/server -o $@ $< $(HTTP_OBJ) $(STATIC) $(CRIT_LIBS) $(HTTP_LIBS) $(LDLIBS)

$(B)/tests/helper_http%: tests/helper_http%.c $(HTTP_OBJ) $(STATIC) | $(B)/tests
	$(CC) $(ALL_CFLAGS) -Itests -Isrc/server -o $@ $< $(HTTP_OBJ) $(STATIC) $(HTTP_LIBS) $(LDLIBS)

# libFuzzer on whatever a client sends the feed (fuzz/http_request.c): one
# loopback connection per input through accept, libmicrohttpd and the routes.
HTTP_FUZZ_SRC := $(HTTP_SRC) src/server/http_page.S src/sys.c src/sys_net.c src/sys_http.c
$(B)/fuzz/http_request: fuzz/http_request.c $(HTTP_FUZZ_SRC) $(wildcard src/server/http*.h) src/server/page.html
	@sh tools/deps.sh fuzz
	@mkdir -p $(B)/fuzz
	$(FUZZ_CC) $(BASE) -Isrc/server -g -O1 -fsanitize=fuzzer,address,undefined \
	    -fno-sanitize-recover=undefined -o $@ fuzz/http_request.c $(HTTP_FUZZ_SRC) $(HTTP_LIBS) -pthread

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

bench: $(BENCHES)
	@sh bench/run.sh $(B)

demo: $(CLI)
	@$(CLI) demo

# libFuzzer targets for the parsers of untrusted input (clang), each run for
# FUZZ_SECONDS on a copy of its seed corpus fuzz/corpus/NAME (new inputs stay
# in the build directory): the store's parsers (shm_parse), the report
# grammar (report_text), mmkitd's wire format (proto) and the event-ring
# reader (evring) are built against the library's sources; the HTTP feed
# (http_request) has its rule above.
FUZZ_NAMES   := proto report_text shm_parse evring http_request
FUZZERS      := $(FUZZ_NAMES:%=$(B)/fuzz/%)
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
$(B)/fuzz/%: fuzz/%.c $(LIB_SRC) include/mmkit.h $(wildcard src/*.h)
	@sh tools/deps.sh fuzz
	@mkdir -p $(B)/fuzz
	$(FUZZ_CC) $(BASE) -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	    -o $@ $< $(LIB_SRC) $(LDLIBS)
fuzz: $(FUZZERS)
	@for f in $(FUZZERS); do n=$${f##*/}; c=$(B)/fuzz/corpus-$$n; mkdir -p $$c; \
	    [ -d fuzz/corpus/$$n ] && cp fuzz/corpus/$$n/* $$c/ 2>/dev/null; \
	    echo "fuzz: $$n for $(FUZZ_SECONDS) s"; \
	    $$f -max_total_time=$(FUZZ_SECONDS) -max_len=70000 -timeout=10 \
	        -artifact_prefix=$(B)/fuzz/ $$c || exit 1; done

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

# ---- SysV shm over files: the preload library (its parsers' fuzz target is fuzz/shm_parse.c) ----
PRELOAD     := $(B)/libmmkit-sysv.so
PRELOAD_SRC := preload/sysv.c src/shm.c src/shm_attach.c src/shm_store.c src/sys.c src/error.c
# Built from source without sanitizers: it is loaded into programs that are not.
$(PRELOAD): $(PRELOAD_SRC) preload/sysv.map include/mmkit.h src/shm.h src/sys.h
	@mkdir -p $(B)
	$(CC) -shared $(BASE) $(CFLAGS) -fPIC -fvisibility=hidden -Wl,-z,defs \
	    -Wl,--version-script=preload/sysv.map -o $@ $(PRELOAD_SRC) -ldl $(LDLIBS)
all: $(PRELOAD)
test: $(PRELOAD)
bench: $(PRELOAD)

# The preload library is installed next to libmmkit.
.PHONY: install-shm uninstall-shm
install: install-shm
install-shm: $(PRELOAD)
	install -D -m 755 $(PRELOAD) $(DESTDIR)$(LIBDIR)/libmmkit-sysv.so
uninstall: uninstall-shm
uninstall-shm:
	rm -f $(DESTDIR)$(LIBDIR)/libmmkit-sysv.so
