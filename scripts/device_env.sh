# Sourced by the device scripts (device_check, device_compact, device_throughput, device_scale): DEVICE
# (default cuda), OUT (created), the carried wheels in .whl/ installed on a GPU machine, PYTHONPATH.
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-/tmp/device_out}
mkdir -p "$OUT"
if [ -d .whl ] && [ "$DEVICE" = cuda ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
# the compiled kernels, built in place where a C compiler is (without one numpy runs, slower)
if [ "$DEVICE" = cuda ]; then
  python3 setup.py -q build_ext --inplace > /tmp/build_ext.log 2>&1 || echo "kernels not built: $(tail -n 1 /tmp/build_ext.log)"
fi
# t LABEL CMD...: run CMD, append "LABEL: wall s (exit rc)" to $S (the calling script's summary file)
t() {
  local label=$1; shift; local t0=$EPOCHREALTIME; "$@"; local rc=$?
  awk -v a="$t0" -v b="$EPOCHREALTIME" -v l="$label" -v rc=$rc 'BEGIN { printf "%s: %.2f s (exit %d)\n", l, b - a, rc }' >> "$S"
}
