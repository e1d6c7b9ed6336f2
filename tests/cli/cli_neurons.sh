#!/usr/bin/env bash
# cli_neurons.sh NMSNN DATA_DIR CASE: the command line with the LIF family's neurons (--neuron
# leaky|synaptic and their settings). Run by CTest, one test per case. Exit 0 when the case ends
# as it should.
set -u
nmsnn=$1 data=$2 case=$3
. "$(dirname "$0")/common.sh"

case $case in
  leaky_fit_inspect_predict)
    "$nmsnn" fit v.csv --target target --neuron leaky --decay 0.85 --threshold 0.9 --surrogate fast_sigmoid \
      --learn-decay --learn-threshold --encoder direct --time-steps 12 --epochs 40 --lr 0.02 --seed 1 \
      --out m.safetensors --json > fit.json || fail "fit failed"
    cat fit.json
    grep -q '"accuracy"' fit.json || fail "no accuracy in the fit line"
    acc=$(sed 's/.*"accuracy": *\([0-9.]*\).*/\1/' fit.json)
    awk -v a="$acc" 'BEGIN { exit !(a >= 0.85) }' || fail "test accuracy $acc < 0.85"
    "$nmsnn" inspect m.safetensors > insp.txt || fail "inspect failed"
    grep -q '"neuron": "leaky"' insp.txt || fail "inspect does not show the leaky neuron"
    grep -q '"surrogate": "fast_sigmoid"' insp.txt || fail "inspect does not show the surrogate"
    grep -q '"learn_decay": true' insp.txt || fail "inspect does not show learn_decay"
    "$nmsnn" predict m.safetensors v.csv --out p.csv 2>/dev/null || fail "predict failed"
    [ "$(wc -l < p.csv)" -eq 151 ] || fail "$(wc -l < p.csv) lines of predictions"
    "$nmsnn" evaluate m.safetensors v.csv --target target > ev.txt || fail "evaluate failed" ;;
  synaptic_report)
    "$nmsnn" fit v.csv --target target --neuron synaptic --alpha 0.6 --reset zero --learn-alpha --time-steps 8 \
      --epochs 2 --readout mean --out m.safetensors --report r.html > /dev/null || fail "fit failed"
    grep -q 'synaptic, beta 0.9' r.html || fail "the report does not describe the synaptic neuron"
    grep -q 'learnt: alpha' r.html || fail "the report does not say alpha is learnt"
    grep -q '"readout": "mean"' <("$nmsnn" inspect m.safetensors) || fail "the readout was not saved" ;;
  li_membrane_readout)
    "$nmsnn" fit v.csv --target target --neuron leaky --output-neuron li --readout max --time-steps 10 --epochs 3 \
      --out m.safetensors > /dev/null || fail "fit failed"
    "$nmsnn" inspect m.safetensors > insp.txt || fail "inspect failed"
    grep -q '"neuron": "li"' insp.txt || fail "inspect does not show the li output layer"
    grep -q '"readout": "max"' insp.txt || fail "inspect does not show the max readout"
    "$nmsnn" predict m.safetensors v.csv --out p.csv 2>/dev/null || fail "predict failed"
    want="reduces a membrane: the output layer must be li"; expect_error fit v.csv "${fit_quick[@]}" --readout last ;;
  neuron_flag_errors)
    want="reset 'scale' is the graded neuron's"; expect_error fit v.csv "${fit_quick[@]}" --neuron leaky --reset scale
    want="the graded neuron resets by scale or subtract"; expect_error fit v.csv "${fit_quick[@]}" --reset zero
    want="apply to --neuron leaky or synaptic"; expect_error fit v.csv "${fit_quick[@]}" --surrogate atan
    want="apply to --neuron synaptic"; expect_error fit v.csv "${fit_quick[@]}" --neuron leaky --alpha 0.5
    want="LIF family's"; expect_error fit v.csv "${fit_quick[@]}" --learn-threshold
    want="apply to spiking models"; expect_error fit v.csv "${fit_quick[@]}" --model mlp --neuron leaky
    [ -z "$(ls -A | grep -v -e '^v.csv$' -e '^out.txt$' -e '^err.txt$')" ] || fail "files left: $(ls -A)" ;;
  *) echo "unknown case $case"; exit 1 ;;
esac
echo "ok ($case)"
