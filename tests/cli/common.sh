# common.sh: sourced by the command-line test scripts (tests/cli/*.sh) after they set nmsnn,
# data and case: a scratch directory of the case's own (removed at exit) holding a copy of
# iris as v.csv, and the helpers below.
work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
cd "$work" || exit 1
cp "$data/iris.csv" v.csv
fail() { echo "FAIL ($case): $*"; exit 1; }
# expect_error CODE... : runs the command line, wants exit status 2 and a message on stderr
# containing $want; prints what it said.
expect_error() {
  local status
  timeout 120 "$nmsnn" "$@" >out.txt 2>err.txt
  status=$?
  cat err.txt
  [ "$status" -eq 2 ] || fail "exit status $status, expected 2"
  grep -qF -- "$want" err.txt || fail "the message lacks '$want'"
}
same() { cmp -s "$1" "$2" || fail "$1 changed"; }
fit_quick=(--target target --epochs 1 --time-steps 4)

