#!/usr/bin/env bash
# The background CPU queue of issues #30 and #31 (docs/results.md, "Queued"): the built-in model's
# candidates, then the paper's studies, each `rait experiment` resuming where it stopped. Every cell runs
# the code of one pinned commit, so that results computed in different sessions stay comparable: this script
# checks that commit out into a worktree beside the repository (once), with `runs/` and `results/adapters/`
# linked back into this checkout (trained adapters land here, to be committed), and starts the queue there
# in the background, logging to runs/<config>.log. It refuses to start a second queue.
#
#   bash scripts/queue.sh            # after `bash scripts/setup.sh`
set -euo pipefail
PINNED=d9727b8  # the code of every cell of cpu_en_builtin.yaml and cpu_en_studies.yaml
CONFIGS=(cpu_en_builtin cpu_en_studies cpu_zh_studies)
root=$(cd "$(dirname "$0")/.." && pwd)
frozen="${RAIT_QUEUE_DIR:-$root/../rait-queue-$PINNED}"
if pgrep -f "rait experiment configs/experiments/cpu_" >/dev/null; then
    echo "queue.sh: a queue is already running:" >&2
    pgrep -af "rait experiment configs/experiments/cpu_" >&2
    exit 1
fi
if [ ! -d "$frozen" ]; then
    git -C "$root" worktree add --detach "$frozen" "$PINNED"
fi
mkdir -p "$root/runs" "$root/results/adapters"
for link in runs results/adapters; do
    if [ ! -L "$frozen/$link" ]; then
        rm -rf "${frozen:?}/$link"
        ln -s "$root/$link" "$frozen/$link"
    fi
done
script=""
for config in "${CONFIGS[@]}"; do
    script+="'$root/.venv/bin/rait' experiment configs/experiments/$config.yaml >> runs/$config.log 2>&1; "
done
cd "$frozen"
PYTHONPATH="$frozen/src" HF_HUB_OFFLINE=1 nohup bash -c "$script" > /dev/null 2>&1 &
echo "queue.sh: started in $frozen (pid $!): ${CONFIGS[*]}; logs in $root/runs/"
