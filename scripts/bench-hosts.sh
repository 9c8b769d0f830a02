#!/usr/bin/env bash
# `lp-host bench --launch hosts` across real separate hosts on this
# machine: network namespaces on a bridge (as tests/src/netns.rs builds
# them), the launcher in lp-bench-h1, agents (`lp-host agent --stay`) in
# the others. Sync calls and fan-out over 2 agent hosts, startup over 3.
# Needs root and iproute2. Usage: scripts/bench-hosts.sh [REPEATS] [CONFIG...]
# (CONFIGs, e.g. sync:1048576: only those, over 2 agent hosts).
set -euo pipefail
repeats=${1:-5}
shift || true
only=()
for config in "$@"; do only+=(--only "$config"); done
exe=${LP_HOST_EXE:-target/debug/lp-host}
[ -x "$exe" ] || { echo "no $exe: run cargo build -p lp-host first" >&2; exit 2; }
net=10.231.77
dir=$(mktemp -d)
chmod 700 "$dir"
agents=()
cleanup() {
  for pid in "${agents[@]}"; do kill "$pid" 2>/dev/null || true; done
  for i in 1 2 3 4; do ip netns del "lp-bench-h$i" 2>/dev/null || true; done
  ip link del lpbench0 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
ip link add lpbench0 type bridge
ip addr add "$net.254/24" dev lpbench0
ip link set lpbench0 up
for i in 1 2 3 4; do
  ns=lp-bench-h$i
  ip netns add "$ns"
  ip link add "lpbv$i" type veth peer name "lpbp$i"
  ip link set "lpbp$i" netns "$ns"
  ip link set "lpbv$i" master lpbench0 up
  ip -n "$ns" link set "lpbp$i" name eth0
  ip -n "$ns" addr add "$net.$i/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
done
agent() {
  ip netns exec "lp-bench-h$1" "$exe" agent --stay --quiet --token "$dir/token" &
  agents+=($!)
}
bench() {
  ip netns exec lp-bench-h1 "$exe" bench --launch hosts --listen "$net.1:7070" \
    --token-file "$dir/token" --repeats "$repeats" "$@"
}
agent 2
agent 3
if [ ${#only[@]} -gt 0 ]; then
  bench --agents 2 "${only[@]}"
  exit
fi
bench --agents 2 --only sync:8 --only sync:1048576 --only fanout:10
agent 4
bench --agents 3 --only startup:50
