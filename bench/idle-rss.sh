#!/usr/bin/env bash
# Idle resident memory of each sample service, each in its own process
# (`shop serve NAME`), after start-up and one health check. Prints a table.
# Usage: bench/idle-rss.sh   (from the repository root; make bench-rss)
set -euo pipefail
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
# The tags of `make build` (see the Makefile).
CGO_ENABLED=0 go build -trimpath -tags grpcnotrace -o "$work/shop" ./cmd/shop
go run ./cmd/meshctl certs init --dir "$work/certs" >/dev/null
declare -A port=([gateway]=18443 [orders]=19001 [inventory]=19002 [payments]=19003)
addrs=(--gateway-addr 127.0.0.1:18443 --orders-addr 127.0.0.1:19001 --inventory-addr 127.0.0.1:19002 --payments-addr 127.0.0.1:19003)
for s in gateway orders inventory payments; do
  OTEL_TRACES_EXPORTER=none OTEL_METRICS_EXPORTER=none "$work/shop" serve "$s" --cert-dir "$work/certs" \
    --listen "127.0.0.1:${port[$s]}" "${addrs[@]}" --log-level error >"$work/$s.log" 2>&1 &
  pids+=($!)
done
probe=$(go tool -modfile=tools/go.mod -n grpc-health-probe)
for s in gateway orders inventory payments; do
  for _ in $(seq 1 100); do
    "$probe" -addr "127.0.0.1:${port[$s]}" -tls -tls-ca-cert "$work/certs/bundle.pem" \
      -tls-client-cert "$work/certs/admin.pem" -tls-client-key "$work/certs/admin-key.pem" >/dev/null 2>&1 && break
    sleep 0.1
  done
done
sleep 2
printf '%-10s %s\n' service "idle RSS"
i=0
for s in gateway orders inventory payments; do
  printf '%-10s %s\n' "$s" "$(awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' "/proc/${pids[$i]}/status")"
  i=$((i+1))
done
