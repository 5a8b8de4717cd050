#!/usr/bin/env bash
# Create benchmarks/.venv-flower: an isolated venv for the Flower side of the benchmark, so Flower and
# Ray never become dependencies of deai itself.
#
# flwr[simulation] resolves to 1.41.0 here (1.42.0 wants a newer certifi than the registry has), so we
# install 1.41's dependency set first and then put flwr 1.42.0 on top with --no-deps (it also needs uv).
# Idempotent: does nothing if flwr 1.42.0 and the helpers already import. Never installs torch.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv-flower"
PY="$VENV/bin/python"
FLWR_VERSION="1.42.0"

if [[ -x "$PY" ]] && "$PY" - <<PYEOF 2>/dev/null
import flwr, numpy, sklearn, psutil, ray  # noqa: F401
from importlib.metadata import version
assert version("flwr") == "$FLWR_VERSION", version("flwr")
PYEOF
then
    echo "flower venv ready: $VENV (flwr $FLWR_VERSION)"
    exit 0
fi

python3 -m venv "$VENV"
"$PY" -m pip install --quiet --upgrade pip
# 1.41's dependency set (includes Ray for the simulation engine) plus the task's libraries.
"$PY" -m pip install --quiet "flwr[simulation]==1.41.0" numpy scikit-learn psutil uv
# 1.42.0 over it, without letting the resolver touch certifi.
"$PY" -m pip install --quiet --no-deps "flwr==$FLWR_VERSION"
"$PY" -c "import flwr, ray; from importlib.metadata import version; print('flwr', version('flwr'), 'ray', ray.__version__)"
if "$PY" -m pip list 2>/dev/null | grep -qi '^torch '; then
    echo "error: torch ended up in $VENV; it must not be installed here" >&2
    exit 1
fi
echo "flower venv ready: $VENV"
