#!/usr/bin/env bash
# Issue 6's whole GPU table in one go (about 6 minutes on one H100), printed last.
#   bash benchmarks/gpu.sh [--budget-s 350] [--json PATH] [--cifar PATH]
# Run from anywhere on a machine with CUDA and PyTorch. rksearch needs pydantic and PyYAML: where
# they are missing, wheels carried in .whl/ are installed to a temporary folder first. Without
# CUDA it stops with exit status 2 and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import pydantic, yaml" 2>/dev/null; then
  if compgen -G ".whl/*.whl" >/dev/null; then
    SITE=$(mktemp -d)
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" .whl/*.whl
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  else
    echo "error: rksearch needs pydantic and PyYAML; install them or carry their wheels in .whl/ (see benchmarks/README.md)" >&2
    exit 2
  fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$PY" benchmarks/throughput.py --device cuda "$@"
