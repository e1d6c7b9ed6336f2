#!/usr/bin/env bash
# cli_safety.sh NMSNN DATA_DIR CASE: one case of the command line's data-safety battery (the
# reliability probe's findings, each as it now ends). Run by CTest, one test per case, each in a
# directory of its own. Exit 0 when the case ends as it should.
set -u
nmsnn=$1 data=$2 case=$3
. "$(dirname "$0")/common.sh"

case $case in
  fit_out_is_input)
    want="is the training data"; expect_error fit v.csv "${fit_quick[@]}" --out v.csv; same v.csv "$data/iris.csv" ;;
  fit_report_is_input)
    want="is the training data"; expect_error fit v.csv "${fit_quick[@]}" --report v.csv; same v.csv "$data/iris.csv" ;;
  fit_out_is_report)
    want="--out and --report name the same file"; expect_error fit v.csv "${fit_quick[@]}" --out x --report x
    [ ! -e x ] || fail "x was written" ;;
  fit_out_link_to_input)
    ln -s v.csv link.csv; ln v.csv hard.csv
    want="is the training data"; expect_error fit v.csv "${fit_quick[@]}" --out link.csv
    expect_error fit v.csv "${fit_quick[@]}" --out hard.csv; same v.csv "$data/iris.csv" ;;
  fit_out_device)
    want="a character device, not a regular file"; expect_error fit v.csv "${fit_quick[@]}" --out /dev/null ;;
  fit_out_fifo)
    mkfifo f; want="a FIFO"; expect_error fit v.csv "${fit_quick[@]}" --out f; [ -p f ] || fail "the FIFO is gone" ;;
  fit_out_directory)
    mkdir d; want="a directory, not a regular file"; expect_error fit v.csv "${fit_quick[@]}" --out d ;;
  fit_out_missing_dir_before_training)
    want="no directory"; expect_error fit v.csv "${fit_quick[@]}" --out /nonexistent/m.safetensors
    ! grep -q trained out.txt || fail "it trained before finding the output unwritable" ;;
  fit_out_foreign_needs_force)
    echo "my notes" > notes.txt
    want="exists and is not an nmsnn model file; not replaced (--force replaces it)"
    expect_error fit v.csv "${fit_quick[@]}" --out notes.txt; grep -q "my notes" notes.txt || fail "notes.txt changed"
    "$nmsnn" fit v.csv "${fit_quick[@]}" --out notes.txt --force >/dev/null || fail "--force did not replace it"
    "$nmsnn" inspect notes.txt >/dev/null || fail "the forced model does not load"
    # A model replaces a model, and a report a report, without --force.
    "$nmsnn" fit v.csv "${fit_quick[@]}" --out notes.txt --report r.html >/dev/null || fail "a model did not replace a model"
    "$nmsnn" fit v.csv "${fit_quick[@]}" --report r.html >/dev/null || fail "a report did not replace a report"
    want="not an nmsnn report file"; expect_error fit v.csv "${fit_quick[@]}" --report notes.txt ;;
  fit_keeps_permissions)
    "$nmsnn" fit v.csv "${fit_quick[@]}" --out m.safetensors >/dev/null || fail "fit failed"
    chmod 600 m.safetensors
    "$nmsnn" fit v.csv "${fit_quick[@]}" --out m.safetensors >/dev/null || fail "fit failed"
    [ "$(stat -c %a m.safetensors)" = 600 ] || fail "mode $(stat -c %a m.safetensors), expected 600"
    [ -z "$(ls -A | grep -v -e '^v.csv$' -e '^m.safetensors$' -e '^out.txt$' -e '^err.txt$')" ] || fail "files left: $(ls -A)" ;;
  predict_out_is_input)
    "$nmsnn" fit v.csv "${fit_quick[@]}" --out m.safetensors >/dev/null || fail "fit failed"
    cp m.safetensors m0
    want="is the model"; expect_error predict m.safetensors v.csv --out m.safetensors; same m.safetensors m0
    want="is the data file"; expect_error predict m.safetensors v.csv --out v.csv; same v.csv "$data/iris.csv"
    want="is the model"; expect_error evaluate m.safetensors v.csv --report m.safetensors; same m.safetensors m0 ;;
  predict_columns_by_name)
    # Columns are matched by name: reordered columns give the same predictions; a renamed or an
    # extra column is an error naming it (nothing written); --by-position matches by position.
    "$nmsnn" fit v.csv --target target --epochs 2 --time-steps 4 --out m.safetensors > /dev/null || fail "fit failed"
    "$nmsnn" predict m.safetensors v.csv --out p.csv 2>/dev/null || fail "predict failed"
    awk -F, -v OFS=, '{ print $3, $1, $5, $4, $2 }' v.csv > reordered.csv
    "$nmsnn" predict m.safetensors reordered.csv --out p2.csv 2>/dev/null || fail "predict on reordered columns failed"
    cmp -s p.csv p2.csv || fail "reordered columns changed the predictions"
    sed '1s/sepal_length/sepal_len/' v.csv > renamed.csv
    want="no column 'sepal_length'; unknown column 'sepal_len'"; expect_error predict m.safetensors renamed.csv --out p3.csv
    [ ! -e p3.csv ] || fail "predictions written for a renamed column"
    want="unknown column 'sepal_len'"; expect_error evaluate m.safetensors renamed.csv
    "$nmsnn" predict m.safetensors renamed.csv --by-position --out p4.csv 2>/dev/null || fail "--by-position failed"
    cmp -s p.csv p4.csv || fail "--by-position changed the predictions"
    awk -F, -v OFS=, '{ print $0, (NR == 1 ? "extra" : 1) }' v.csv > extra.csv
    want="unknown column 'extra'"; expect_error predict m.safetensors extra.csv
    want="5 feature columns, the model takes 4"; expect_error predict m.safetensors extra.csv --by-position ;;
  predict_out_replaces_only_predictions)
    "$nmsnn" fit v.csv "${fit_quick[@]}" --out m.safetensors >/dev/null || fail "fit failed"
    "$nmsnn" predict m.safetensors v.csv --out p.csv 2>/dev/null || fail "predict failed"
    "$nmsnn" predict m.safetensors v.csv --out p.csv 2>/dev/null || fail "predict did not replace its own predictions"
    printf 'id,score\n1,2\n' > other.csv
    want="exists and is not an nmsnn predictions file"; expect_error predict m.safetensors v.csv --out other.csv
    grep -q "id,score" other.csv || fail "other.csv changed"
    "$nmsnn" predict m.safetensors v.csv --out other.csv --force 2>/dev/null || fail "--force did not replace it" ;;
  stdout_full)
    "$nmsnn" fit v.csv "${fit_quick[@]}" --out m.safetensors >/dev/null || fail "fit failed"
    want="cannot write standard output"
    timeout 120 "$nmsnn" predict m.safetensors v.csv >/dev/full 2>err.txt; s=$?; cat err.txt
    [ $s -eq 2 ] && grep -qF "$want" err.txt || fail "predict > /dev/full: exit $s"
    timeout 120 "$nmsnn" inspect m.safetensors >/dev/full 2>err.txt; s=$?; cat err.txt
    [ $s -eq 2 ] || fail "inspect > /dev/full: exit $s" ;;
  fifo_input)
    mkfifo in.csv; want="a FIFO (named pipe), not a regular file"; expect_error fit in.csv --target target ;;
  dev_zero_input)
    want="a character device, not a regular file"; expect_error fit /dev/zero --target target
    "$nmsnn" fit v.csv "${fit_quick[@]}" --out m.safetensors >/dev/null || fail "fit failed"
    expect_error predict m.safetensors /dev/zero; expect_error inspect /dev/zero ;;
  na_in_numeric_target)
    { head -1 "$data/house_price.csv"; sed -n '2,200p' "$data/house_price.csv"; \
      sed -n '201p' "$data/house_price.csv" | sed 's/^[^,]*,/NA,/'; } > h.csv
    want="line 201, column 'house_price': 'NA' is not a number"; expect_error fit h.csv --target house_price --epochs 1 ;;
  duplicate_columns)
    printf 'a,a,target\n1,2,0\n2,1,1\n3,3,0\n4,4,1\n' > dup.csv
    want="the column name 'a' appears more than once"; expect_error fit dup.csv --target target --epochs 1 ;;
  huge_target_index)
    want="no column named '99999999999999999999'"; expect_error fit v.csv --target 99999999999999999999
    ! grep -q stol err.txt || fail "a raw stol message" ;;
  feature_in_units_of_1e300)
    awk -F, 'NR==1 {print; next} {OFS=","; $3 = $3 "e300"; print}' v.csv > big.csv
    "$nmsnn" fit big.csv --target target --epochs 2 --time-steps 8 --out m.safetensors > fit.txt || fail "fit failed"
    "$nmsnn" predict m.safetensors big.csv --out p.csv 2>/dev/null || fail "the saved model does not load and predict"
    [ "$(wc -l < p.csv)" -eq 151 ] || fail "$(wc -l < p.csv) lines of predictions" ;;
  memory_limit)
    want="more than the memory limit of"; expect_error fit v.csv "${fit_quick[@]}" --memory-limit 64K
    want="--memory-limit: 'lots' is not a size"; expect_error fit v.csv "${fit_quick[@]}" --memory-limit lots
    "$nmsnn" fit v.csv "${fit_quick[@]}" --memory-limit 1G >/dev/null || fail "1G was refused" ;;
  model_flipped_byte)
    "$nmsnn" fit v.csv "${fit_quick[@]}" --out m.safetensors >/dev/null || fail "fit failed"
    off=$(( $(stat -c %s m.safetensors) - 3 ))
    b=$(od -An -tu1 -j "$off" -N1 m.safetensors | tr -d ' ')
    printf "$(printf '\\%03o' $(( (b + 1) % 256 )))" | dd of=m.safetensors bs=1 seek="$off" conv=notrunc status=none
    want="checksum mismatch"; expect_error predict m.safetensors v.csv ;;
  *) echo "unknown case $case"; exit 1 ;;
esac
echo "ok ($case)"
