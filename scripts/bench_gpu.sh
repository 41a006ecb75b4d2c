#!/usr/bin/env bash
# The speed tables at GPU sizes: scripts/bench.py --large (8x batches and update arrays), the
# float32 workloads and their bfloat16 (mixed precision) twins, JSON written to one path.
#
#     bash scripts/bench_gpu.sh [OUT.json] [--quick] [extra bench.py arguments]
#
# jnet's `hoist` and mixed-precision defaults are decided from this file's numbers on a GPU;
# until it has run on one they are stated as unmeasured (docs/speed.md). --quick is a CPU dry
# run of the same command (small sizes, one round), what the tests run.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="bench_gpu.json"
if [[ $# -gt 0 && "$1" != --* ]]; then
    out="$1"
    shift
fi
python="${PYTHON:-$here/../.venv/bin/python}"
[[ -x "$python" ]] || python="$(command -v python3)"
workloads="mlp,mlp_bf16,cnn,cnn_bf16,cnn_bn_dropout,lstm,gru,transformer,cnn1d,update"
exec "$python" "$here/bench.py" --large --only "$workloads" --json "$out" "$@"
