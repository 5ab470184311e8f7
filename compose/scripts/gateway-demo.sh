#!/bin/sh
# Demo gateway: replays each bundled SKAB run as one live line, stamped with
# the current time, forever. Sequence numbers and the store-and-forward
# buffer live in the gateway-state volume, so restarts resend nothing twice.
set -u
data=/app/examples/data/skab
replay_line() {
  run="$1"
  line="$(echo "$run" | tr / -)"
  while true; do
    lineguard gateway replay "${data}/${run}.csv" --line "${line}" \
      --speed "${GATEWAY_SPEED:-1}" --retime --gateway-id "gw-${line}" \
      --state-dir /var/lib/lineguard/gateway || sleep 5
  done
}
for run in valve1/0 valve1/1 valve1/4 valve2/0 valve2/1; do
  replay_line "$run" &
done
wait
