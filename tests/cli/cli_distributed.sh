#!/usr/bin/env bash
# cli_distributed.sh NMSNN DATA_DIR CASE [MPI]: checkpoints and distributed training from the
# command line. MPI is ON when the command line was built with NMSNN_MPI (then mpirun runs it).
# Run by CTest, one test per case. Exit 0 when the case ends as it should.
set -u
nmsnn=$1 data=$2 case=$3 mpi=${4:-OFF}
. "$(dirname "$0")/common.sh"
mpirun_=(mpirun --allow-run-as-root --oversubscribe --mca btl self,vader --mca btl_vader_single_copy_mechanism none)
run=(--target target --epochs 6 --time-steps 6 --seed 3 --hidden 16 --batch-size 32 --threads 1)

case $case in
  checkpoint_resume)
    # A whole run writes its checkpoint after epoch 3; a second run resumes from it: the same model file.
    "$nmsnn" fit v.csv "${run[@]}" --checkpoint-every 3 --checkpoint c.ckpt --out a.safetensors --json > a.json || fail "fit failed"
    [ -f c.ckpt ] || fail "no checkpoint written"
    cp c.ckpt c3.ckpt
    "$nmsnn" fit v.csv "${run[@]}" --checkpoint c3.ckpt --resume --out b.safetensors --json > b.json || fail "resume failed"
    cat a.json b.json
    cmp -s a.safetensors b.safetensors || fail "the resumed model differs from the uninterrupted one"
    grep -q '"epochs": 6' b.json || fail "the resumed run does not report 6 epochs"
    # Other settings refuse the checkpoint, naming the setting.
    want="batch_size"; expect_error fit v.csv "${run[@]/32/16}" --checkpoint c3.ckpt --resume
    # A checkpoint is not a model.
    want="checkpoint"; expect_error inspect c3.ckpt
    ;;
  checkpoint_flag_errors)
    want="need --checkpoint PATH"; expect_error fit v.csv "${fit_quick[@]}" --checkpoint-every 2
    want="need --checkpoint PATH"; expect_error fit v.csv "${fit_quick[@]}" --resume
    want="needs --checkpoint-every"; expect_error fit v.csv "${fit_quick[@]}" --checkpoint c.ckpt
    want="resume from"; expect_error fit v.csv "${fit_quick[@]}" --checkpoint missing.ckpt --resume
    want="is the training data"; expect_error fit v.csv "${fit_quick[@]}" --checkpoint v.csv --checkpoint-every 1
    ;;
  distributed)
    if [ "$mpi" != ON ]; then
      want="built without MPI"; expect_error fit v.csv "${fit_quick[@]}" --distributed
      echo "ok ($case: no MPI in this build)"; exit 0
    fi
    command -v mpirun >/dev/null || fail "mpirun not found"
    # The one-process algorithm (a checkpointed run) and 1, 2, 3 ranks: the same model file.
    "$nmsnn" fit v.csv "${run[@]}" --checkpoint-every 100 --checkpoint s.ckpt --out serial.safetensors > /dev/null || fail "serial fit failed"
    for p in 1 2 3; do
      "${mpirun_[@]}" -np $p "$nmsnn" fit v.csv "${run[@]}" --distributed --out m$p.safetensors --json > out$p.json 2> err$p.txt \
        || { cat err$p.txt; fail "np $p failed"; }
      [ "$(wc -l < out$p.json)" -eq 1 ] || fail "np $p: $(wc -l < out$p.json) lines of output (rank 0 alone prints)"
      cat out$p.json
      cmp -s serial.safetensors m$p.safetensors || fail "np $p: the model differs from the one-process run"
    done
    # A bad row in rank 1's shard stops every rank with a message naming the rank and the line.
    awk 'NR == 3 { $0 = "x,1,2,3,setosa" } { print }' v.csv > bad.csv
    "${mpirun_[@]}" -np 2 "$nmsnn" fit bad.csv "${run[@]}" --distributed > out.txt 2> err.txt; status=$?
    cat err.txt
    [ $status -ne 0 ] || fail "a bad row was accepted"
    grep -q "rank 1 of 2: read_csv: .*line 3" err.txt || fail "the message does not name rank 1 and line 3"
    ;;
  *) echo "unknown case $case"; exit 1 ;;
esac
echo "ok ($case)"
