#!/usr/bin/env bash
# run-local.sh runs the whole pipeline on this machine: a NATS server with JetStream (data in .run/nats,
# listening on 127.0.0.1:4222 so `nats sub 'doraflow.>'` can attach) and the five services from bin/,
# each with its ops endpoints on 127.0.0.1:8081…8085. Ctrl-C stops everything; services drain first.
#
# This is the interim `make run`; sources without configuration stay disabled and say so in their logs.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bindir=$(hack/tools.sh nats | tail -n 1)
mkdir -p .run/nats .run/logs

pids=()
cleanup() {
	trap - INT TERM EXIT
	echo "stopping…"
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; done
	wait || true
}
trap cleanup INT TERM EXIT

"$bindir/nats-server" -js -a 127.0.0.1 -p 4222 -sd .run/nats >.run/logs/nats-server.log 2>&1 &
pids+=($!)
for _ in $(seq 50); do
	(echo >/dev/tcp/127.0.0.1/4222) 2>/dev/null && break
	sleep 0.1
done

port=8081
for s in argocd-watcher webrca-poller enricher devlake-sink metrics-exporter; do
	NATS_URL=nats://127.0.0.1:4222 OPS_ADDR=127.0.0.1:$port "bin/$s" >".run/logs/$s.log" 2>&1 &
	pids+=($!)
	printf '%-18s http://127.0.0.1:%d/  (/metrics, /readyz, logs: .run/logs/%s.log)\n' "$s" "$port" "$s"
	port=$((port + 1))
done
echo "NATS: nats://127.0.0.1:4222 (try: $bindir/nats sub 'doraflow.>')"
echo "Ctrl-C to stop."
wait -n "${pids[@]}" || true
echo "a process exited; see .run/logs/"
