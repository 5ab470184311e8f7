#!/bin/sh
# One-shot init: create LineGuard's topics, then train a first model for each
# demo line (skipped for lines that already have one, so re-runs are no-ops).
set -eu
python - <<'PY'
from lineguard.stream.worker import ensure_topics
from lineguard.settings import get_settings
ensure_topics(get_settings())
print("topics ready")
PY
data=/app/examples/data/skab
for run in valve1/0 valve1/1 valve1/4 valve2/0 valve2/1; do
  line="$(echo "$run" | tr / -)"
  if [ -f "${LINEGUARD_REGISTRY_DIR}/${line}/ACTIVE" ]; then
    echo "${line}: has a model"
  else
    lineguard train --line "${line}" "${data}/${run}.csv" --rows 400 --activate
  fi
done
