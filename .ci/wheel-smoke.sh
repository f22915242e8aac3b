#!/usr/bin/env bash
# The wheel works outside the checkout: build it, install it into a fresh venv that reuses the project venv's
# installed dependencies (no downloads: --no-deps --no-index), then, from an empty folder, `chanmusic --help`,
# `--version` and a dry run of the demo comparison (specs read from the installed package data).
# Usage: bash .ci/wheel-smoke.sh [VENV]   (VENV: the project's venv, default .venv); FULL_DEMO=1 also runs the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(cd "${1:-.venv}" && pwd)
PY="$VENV/bin/python"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
start=$(date +%s)
"$PY" -m pip wheel --quiet --no-deps --no-build-isolation -w "$WORK/dist" .
rm -rf build
"$PY" -m venv "$WORK/venv"
SITE=$("$WORK/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# the project venv's packages, appended after the new venv's own (its .pth files, e.g. the editable
# chanmusic finder, are not run: only the folder is added)
"$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' > "$SITE/_project_venv_deps.pth"
"$WORK/venv/bin/python" -m pip install --quiet --no-deps --no-index "$WORK"/dist/chanmusic-*.whl
echo "[wheel-smoke] built and installed in $(( $(date +%s) - start )) s"
mkdir "$WORK/elsewhere" && cd "$WORK/elsewhere"
CHANMUSIC="$WORK/venv/bin/chanmusic"
"$WORK/venv/bin/python" - <<'PY'
import chanmusic, chanmusic.runner.spec as spec
assert "site-packages" in chanmusic.__file__, chanmusic.__file__   # the wheel, not the checkout
assert (spec.EXPERIMENTS / "paper.yaml").is_file() and "site-packages" in str(spec.EXPERIMENTS), spec.EXPERIMENTS
print("[wheel-smoke] chanmusic", chanmusic.__version__, "from", chanmusic.__file__)
PY
"$CHANMUSIC" --help | tee help.txt
for cmd in fit validate test predict prepare compare report robustness; do
    grep -q "^  $cmd " help.txt || { echo "[wheel-smoke] --help does not list $cmd"; exit 1; }
done
"$CHANMUSIC" --version
"$CHANMUSIC" compare --profile demo --out demo_out --dry-run
if [ "${FULL_DEMO:-0}" = 1 ]; then
    "$CHANMUSIC" compare --profile demo --out demo_out
fi
echo "[wheel-smoke] ok in $(( $(date +%s) - start )) s"
