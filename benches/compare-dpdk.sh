#!/usr/bin/env bash
# Side-by-side throughput of DPDK's dpdk-testpmd and `pollux testpmd` on the
# same topology, in one run on one machine, one forwarding core, burst 32.
#
#   benches/compare-dpdk.sh [SECONDS]        (default 5 s per run)
#
# Needs Debian's dpdk-dev (dpdk-testpmd, net_null PMD); runs without root
# apart from DPDK's own needs (DPDK runs with --no-huge here). Prints one line
# per case: DPDK pps, Pollux pps and the ratio Pollux/DPDK, and writes the
# same lines as Markdown rows to target/compare-dpdk.md for docs/performance.md.
#
# DPDK's figure is the sum over ports of the "Throughput (since last show)"
# rate of its last one-second stats period (steady state); Pollux's is packets counted
# by its ports divided by the run time (startup included, so it is the
# conservative side of the comparison).
set -euo pipefail
[ "${1:-}" -ge 3 ] 2>/dev/null || [ -z "${1:-}" ] || { echo "usage: $0 [SECONDS >= 3]" >&2; exit 2; }
secs=${1:-5}
cd "$(dirname "$0")/.."
root=$(pwd)
out_md="$root/target/compare-dpdk.md"
command -v dpdk-testpmd >/dev/null || { echo "dpdk-testpmd not found: apt-get install dpdk-dev librte-net-null23" >&2; exit 1; }
cargo build --release --quiet -p pollux-cli
pollux="$root/target/release/pollux"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# dpdk_rate LOG FIELD [PORT] -> the last "FIELD: N" throughput line, summed
# over ports, or of PORT only
dpdk_rate() {
  awk -v f="$2:" -v only="${3:-}" '
    /NIC statistics for port/ { for (i = 1; i < NF; i++) if ($i == "port") port = $(i + 1) + 0 }
    $1 == f && (only == "" || port == only + 0) { last[port] = $2 }
    END { s=0; for (p in last) s += last[p]; printf "%d\n", s }' "$1"
}

run_dpdk() { # NAME MODE VDEVS... -- EXTRA
  local name=$1 mode=$2; shift 2
  local vdevs=() extra=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do vdevs+=(--vdev "$1"); shift; done
  [ $# -gt 0 ] && shift
  extra=("$@")
  timeout -s INT $((secs + 1)) dpdk-testpmd --no-huge -m 1024 --no-pci -l 0,1 \
    --file-prefix "pollux-cmp-$$-$name" "${vdevs[@]}" -- \
    --forward-mode="$mode" --burst=32 --total-num-mbufs=16384 --stats-period 1 \
    "${extra[@]}" >"$tmp/dpdk-$name.log" 2>&1 || true
  if ! grep -q 'Tx-pps' "$tmp/dpdk-$name.log"; then
    echo "dpdk-testpmd failed for $name:" >&2; tail -20 "$tmp/dpdk-$name.log" >&2; exit 1
  fi
}

run_pollux() { # NAME MODE VDEVS...
  local name=$1 mode=$2; shift 2
  local vdevs=()
  for v in "$@"; do vdevs+=(--vdev "$v"); done
  "$pollux" testpmd "${vdevs[@]}" --fwd "$mode" --burst 32 --nb-cores 1 \
    --duration "$secs" --json 2>"$tmp/pollux-$name.err" | tail -1 >"$tmp/pollux-$name.json"
}

pollux_rate() { # NAME rx|tx
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(int(r["total_"+sys.argv[2]+"_pps"]))' \
    "$tmp/pollux-$1.json" "$2"
}

report() { # CASE DPDK POLLUX
  local ratio
  ratio=$(python3 -c "print(f'{$3/$2:.2f}')")
  printf '%-34s DPDK %12s pps   Pollux %12s pps   ratio %s\n' "$1" "$2" "$3" "$ratio"
  printf '| %s | %s | %s | %s |\n' "$1" "$2" "$3" "$ratio" >>"$out_md"
}

mkdir -p "$root/target"
{
  echo "Measured $(date -u +%Y-%m-%d) on $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $secs s per run, one forwarding core, burst 32."
  echo
  echo "| case | DPDK 22.11 (pps) | Pollux (pps) | Pollux / DPDK |"
  echo "|---|---|---|---|"
} >"$out_md"

run_dpdk io io net_null0 net_null1
run_pollux io io null0 null1
report "io null0<->null1 (rx, both ports)" "$(dpdk_rate "$tmp/dpdk-io.log" Rx-pps)" "$(pollux_rate io rx)"

run_dpdk txonly txonly net_null0
run_pollux txonly txonly null0
report "txonly null0 (64 B)" "$(dpdk_rate "$tmp/dpdk-txonly.log" Tx-pps)" "$(pollux_rate txonly tx)"

run_dpdk macswap macswap net_null0 net_null1
run_pollux macswap macswap null0 null1
report "macswap null0<->null1 (rx)" "$(dpdk_rate "$tmp/dpdk-macswap.log" Rx-pps)" "$(pollux_rate macswap rx)"

# Bond: balance-xor layer3+4 over two null members, one flow per packet
# source address (DPDK: txonly --txonly-multi-flow on the bond, port 2;
# Pollux: flowgen on the bond, whose members are inside it).
run_dpdk bond txonly net_null0 net_null1 'net_bonding0,mode=2,slave=net_null0,slave=net_null1,xmit_policy=l34' \
  -- --txonly-multi-flow --portmask=0x4 --port-topology=loop
run_pollux bond flowgen null0 null1 'bond0,mode=balance-xor,member=null0,member=null1,xmit_hash_policy=layer3+4'
report "bond balance-xor l3+4, 2 null (tx)" "$(dpdk_rate "$tmp/dpdk-bond.log" Tx-pps 2)" "$(pollux_rate bond tx)"
echo "(rows written to $out_md)"
