#!/usr/bin/env bash
# Issue 6's whole GPU table in one go (about 6 minutes on one H100), printed last.
#   bash benchmarks/gpu.sh [--budget-s 350] [--json PATH] [--cifar PATH]
#   bash benchmarks/gpu.sh --dry-run [--only ...]   # what is there, what would run; installs nothing
# Run from anywhere on a machine with CUDA and PyTorch. rksearch needs pydantic and PyYAML: where
# they are missing, wheels carried in .whl/ are installed to a temporary folder first. Without
# CUDA it stops with exit status 2 and says so. --dry-run checks python, torch (and its GPUs),
# torchvision, numpy, pydantic, PyYAML, triton and a C compiler (torch.compile builds kernels),
# lists the rows a run would measure and exits 0, GPU or not; 2 where python or torch is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
dry_run() {
  local missing=0 v cc report line
  echo "dry run: nothing is installed or measured"
  if ! v=$("$PY" -c 'import sys; print(sys.version.split()[0])' 2>/dev/null); then
    echo "python: $PY not found"; return 2
  fi
  echo "python: $PY $v"
  # one interpreter for every check: each `import torch` costs seconds of a small machine's CPU
  report=$("$PY" - 2>/dev/null <<'EOF'
import importlib
for m in ("torch", "torchvision", "numpy", "pydantic", "yaml", "triton"):
    try:
        print(f"{m}: {getattr(importlib.import_module(m), '__version__', 'present')}")
    except Exception:  # not installed, or broken (a CUDA library missing)
        print(f"{m}: missing")
try:
    import torch
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    print("GPU: " + (", ".join(torch.cuda.get_device_name(i) for i in range(n)) if n else "none (a run stops with exit status 2)"))
except Exception:
    pass
EOF
  ) || true
  while IFS= read -r line; do
    echo "$line"
    case $line in
      "torch: missing") missing=1 ;;
      "pydantic: missing"|"yaml: missing") if compgen -G ".whl/*.whl" >/dev/null; then echo "  (a run installs the wheels in .whl/ first)"; fi ;;
    esac
  done <<< "$report"
  if (( missing )); then echo "error: the table needs torch" >&2; return 2; fi
  cc=$(command -v cc || command -v gcc || command -v clang || true)
  echo "C compiler: ${cc:-missing (the torch.compile rows would fail)}"
  PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$PY" benchmarks/throughput.py --device cuda --list "$@"
}
args=()
for a in "$@"; do [[ $a == --dry-run ]] || args+=("$a"); done
if (( ${#args[@]} < $# )); then
  dry_run ${args[@]+"${args[@]}"}
  exit $?
fi
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
