#!/bin/sh
# tests/mpi/run_mpi_tests.sh TEST_MPI ranks|faults|resume — runs test_mpi under mpirun.
#   ranks:  the digests of every training setting for 1, 2, 3, 4 ranks x 1, 2 threads per rank,
#           and for the serial communicator, must all be the same
#   faults: rank 1 fails (a bad shard, no memory, killed, an error of the program's own): the job
#           must end with a non-zero status within 30 s, naming the rank where it can
#   resume: an interrupted fit resumed from its checkpoint equals the uninterrupted one (2 ranks)
set -u
BIN=$1
WHAT=$2
MPIRUN=${MPIRUN:-mpirun}
command -v "$MPIRUN" >/dev/null 2>&1 || { echo "mpirun not found: skipped"; exit 77; }
# As root in a container (CI): allow it; more ranks than cores; shared memory without CMA.
RUN="$MPIRUN --allow-run-as-root --oversubscribe --mca btl self,vader --mca btl_vader_single_copy_mechanism none"
export OMPI_MCA_rmaps_base_oversubscribe=1
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
fail=0

case "$WHAT" in
ranks)
  "$BIN" digest --serial > "$DIR/serial" || { echo "serial run failed"; exit 1; }
  cat "$DIR/serial"
  for p in 1 2 3 4; do
    for t in 1 2; do
      $RUN -np $p "$BIN" digest --threads $t > "$DIR/p$p.t$t" 2> "$DIR/err" || { echo "np $p threads $t failed"; cat "$DIR/err"; exit 1; }
      if cmp -s "$DIR/serial" "$DIR/p$p.t$t"; then echo "np $p threads $t: identical"
      else echo "np $p threads $t: DIFFERENT"; diff "$DIR/serial" "$DIR/p$p.t$t"; fail=1; fi
    done
  done
  [ "$(wc -l < "$DIR/serial")" -ge 6 ] || { echo "expected 6 settings"; fail=1; }
  ;;
faults)
  for kind in bad-shard memory kill throw; do
    t0=$(date +%s%N)
    timeout 120 $RUN -np 3 "$BIN" fault $kind > "$DIR/out" 2> "$DIR/err"
    rc=$?
    t1=$(date +%s%N)
    ms=$(( (t1 - t0) / 1000000 ))
    secs="$((ms / 1000)).$(printf %03d $((ms % 1000)))"
    msg=$(grep -m1 -E "rank|killed|signal|abort" "$DIR/err" | cut -c1-200)
    echo "$kind: exit $rc after ${secs}s: $msg"
    if [ $rc = 0 ] || [ $rc = 124 ]; then echo "  the job did not fail as it must"; fail=1; fi
    if [ $ms -gt 30000 ]; then echo "  too slow to stop"; fail=1; fi
    case $kind in
      bad-shard) grep -q "rank 1 of 3: .*must be finite" "$DIR/err" || { echo "  no message naming rank 1"; cat "$DIR/err"; fail=1; }
                 [ "$(grep -c "stopped: rank 1 of 3" "$DIR/err")" = 3 ] || { echo "  not every rank stopped with it"; fail=1; } ;;
      memory)    grep -q "rank 1 of 3: .*training" "$DIR/err" || { echo "  no message naming rank 1"; cat "$DIR/err"; fail=1; } ;;
      throw)     grep -q "rank 1: unexpected error" "$DIR/err" || { echo "  no message naming rank 1"; cat "$DIR/err"; fail=1; } ;;
      kill)      grep -qiE "signal 9|killed" "$DIR/err" || { echo "  mpirun did not report the killed rank"; cat "$DIR/err"; fail=1; } ;;
    esac
  done
  ;;
resume)
  $RUN -np 2 "$BIN" resume "$DIR/ckpt.safetensors" > "$DIR/out" 2> "$DIR/err"; rc=$?
  cat "$DIR/out"
  [ $rc = 0 ] && grep -q "resume ok" "$DIR/out" || { cat "$DIR/err"; fail=1; }
  ;;
*) echo "unknown: $WHAT"; exit 2 ;;
esac
exit $fail
