#!/bin/sh
# Every write-protect method of the region engine, forced in turn
# (MMKIT_PROTECT, src/protect.c), and mprotect with short runs each in its
# own call or gathered in spans at any distance (MMKIT_PROTECT_BATCH,
# src/view_protect.c), under the model tests, the 4-writer + snapshotter
# point-in-time tests and the mapping-count tests, so every path runs on
# every machine whatever the kernel prefers.  Under `make test-asan`
# the build is the ASan one.  Exit 0 pass, 77 skip, else fail.
B=${1:-build}
for t in test_region test_region_engine test_region_spans; do
    [ -x "$B/tests/$t" ] || { echo "no $B/tests/$t"; exit 77; }
done
fail=0
# The model tests with random seeds are left to the plain run; the sanitizer
# build, several times slower, runs the fixed-seed model and the writers.
case "$B" in
*asan*) r_set='model_fixed_seeds|snapshots_*4_writers|failed_*'
        e_set='model_never_undercounts_default_budget|model_never_undercounts_budget_32_evicts|every_protect_*|a_mapping_placed_*' ;;
*)      r_set='model_*|snapshots_*4_writers|mapping_count_*|failed_*|syscall_into_*'
        e_set='model_*|kernel_count_*|every_protect_*|a_mapping_placed_*' ;;
esac
for mb in move/default mprotect/off mprotect/max; do
    m=${mb%/*}
    b=${mb#*/}
    for spec in "test_region */@($r_set)" "test_region_engine */@($e_set)" "test_region_spans *"; do
        t=${spec%% *}
        f=${spec#* }
        out=$(MMKIT_PROTECT=$m MMKIT_PROTECT_BATCH=$b timeout 500 "$B/tests/$t" -j2 --filter "$f" 2>&1)
        rc=$?
        line=$(printf '%s\n' "$out" | grep 'Synthesis')
        echo "MMKIT_PROTECT=$m MMKIT_PROTECT_BATCH=$b $t: $line"
        if [ "$rc" -ne 0 ] || ! printf '%s' "$line" | grep -q 'Failing: 0 | Crashing: 0'; then
            printf '%s\n' "$out" | grep -E 'FAIL|assert' | head -20
            fail=1
        fi
        case "$line" in *"Tested: 0 "*) echo "no test matched"; fail=1 ;; esac
    done
done
exit $fail
