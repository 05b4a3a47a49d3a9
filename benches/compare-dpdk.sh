#!/usr/bin/env bash
# Side by side: DPDK 22.11's dpdk-testpmd and `pollux testpmd` on the same
# software ports, one forwarding core each (CPU 1; the main lcore on CPU 0),
# burst 32, 16384 mbufs, both in normal 4 KiB pages (--no-huge on both).
#
#   benches/compare-dpdk.sh [SECONDS]     (default 6 s per run; PAIRS=5)
#
# Method (what docs/performance.md calls the side-by-side method):
# - The same statistic on both sides: each run prints its rate once per
#   second (DPDK: "Throughput (since last show)"; Pollux: the `periods` of
#   its JSON report, the same packets-per-elapsed-time per period); a run's
#   figure is the median of its per-second rates after the first two
#   seconds (warm-up).
# - PAIRS interleaved pairs per case, the order alternating (DPDK first in
#   odd pairs, Pollux first in even ones), so drift of the machine falls on
#   both sides. A case's result is the median of its runs and of its
#   per-pair ratios, with the spread (min-max).
# - TSC cycles per packet for both: the forwarding core is busy polling
#   all the time, so cycles/packet = TSC Hz / packets per second.
# - Generators that do the same per-packet work: txonly copies the same
#   headers per packet on both sides; the bond case uses DPDK's
#   --txonly-multi-flow and Pollux's option of the same name, which does
#   DPDK's per-packet work (new IPv4 source, lengths, full header checksum).
#
# Needs Debian's dpdk-dev (dpdk-testpmd, net_null, net_bonding). Prints one
# line per case and writes Markdown (every sample) to target/compare-dpdk.md.
set -euo pipefail
[ "${1:-}" -ge 4 ] 2>/dev/null || [ -z "${1:-}" ] || { echo "usage: $0 [SECONDS >= 4]" >&2; exit 2; }
secs=${1:-6}
pairs=${PAIRS:-5}
cd "$(dirname "$0")/.."
root=$(pwd)
out_md="$root/target/compare-dpdk.md"
command -v dpdk-testpmd >/dev/null || { echo "dpdk-testpmd not found: apt-get install dpdk-dev librte-net-null23 librte-net-bond23" >&2; exit 1; }
cargo build --release --quiet -p pollux-cli
pollux="$root/target/release/pollux"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
samples="$tmp/samples.tsv" # case side pair median-pps per-second-rates...
: >"$samples"

# TSC frequency: the kernel's calibration, else /proc/cpuinfo's clock.
tsc_mhz=$(dmesg 2>/dev/null | sed -n 's/.*tsc: Refined TSC clocksource calibration: \([0-9.]*\) MHz.*/\1/p' | tail -1)
[ -n "$tsc_mhz" ] || tsc_mhz=$(dmesg 2>/dev/null | sed -n 's/.*tsc: Detected \([0-9.]*\) MHz.*/\1/p' | tail -1)
[ -n "$tsc_mhz" ] || tsc_mhz=$(grep -m1 'cpu MHz' /proc/cpuinfo | cut -d: -f2 | xargs)

# dpdk_rates LOG Rx|Tx PORTS -> the per-second rates (sum over PORTS, a
# comma list) after the warm-up, one per line.
dpdk_rates() {
  python3 - "$1" "$2" "$3" <<'EOF'
import re, sys
log, field, ports = sys.argv[1], sys.argv[2] + "-pps:", {int(p) for p in sys.argv[3].split(",")}
periods, cur, port = [], {}, None
for line in open(log, errors="replace"):
    m = re.search(r"NIC statistics for port (\d+)", line)
    if m:
        port = int(m.group(1))
        if port in cur:  # a port seen again: the next period began
            periods.append(cur)
            cur = {}
        continue
    w = line.split()
    if port is not None and len(w) >= 2 and w[0] == field:
        cur[port] = float(w[1])
if cur:
    periods.append(cur)
for p in periods[2:]:
    if ports <= p.keys():
        print(sum(p[q] for q in ports))
EOF
}

# pollux_rates JSON rx|tx PORTS -> the same from Pollux's report.
pollux_rates() {
  python3 - "$1" "$2" "$3" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
ports = [int(p) for p in sys.argv[3].split(",")]
for p in r["periods"][2:]:
    print(sum(p[sys.argv[2] + "_pps"][q] for q in ports))
EOF
}

median_of() { python3 -c 'import statistics,sys; v=[float(x) for x in sys.stdin.read().split()]; print(f"{statistics.median(v):.0f}" if v else "nan")'; }

run_dpdk() { # CASE PAIR FIELD PORTS MODE VDEVS... -- EXTRA...
  local case=$1 pair=$2 field=$3 ports=$4 mode=$5; shift 5
  local vdevs=() extra=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do vdevs+=(--vdev "$1"); shift; done
  [ $# -gt 0 ] && shift
  extra=("$@")
  local log="$tmp/dpdk-$case-$pair.log"
  # EAL start-up (2-3 s with --no-huge -m 1024) comes out of the timeout.
  timeout -s INT $((secs + 4)) dpdk-testpmd --no-huge -m 1024 --no-pci -l 0,1 \
    --file-prefix "pollux-cmp-$$-$case" "${vdevs[@]}" -- \
    --forward-mode="$mode" --burst=32 --total-num-mbufs=16384 --stats-period 1 \
    "${extra[@]}" >"$log" 2>&1 || true
  local rates
  rates=$(dpdk_rates "$log" "$field" "$ports")
  if [ -z "$rates" ]; then
    echo "dpdk-testpmd gave no rates for $case:" >&2; tail -20 "$log" >&2; exit 1
  fi
  printf '%s\tdpdk\t%s\t%s\t%s\n' "$case" "$pair" "$(echo "$rates" | median_of)" "$(echo $rates)" >>"$samples"
}

run_pollux() { # CASE PAIR rx|tx PORTS MODE VDEVS... -- EXTRA...
  local case=$1 pair=$2 field=$3 ports=$4 mode=$5; shift 5
  local vdevs=() extra=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do vdevs+=(--vdev "$1"); shift; done
  [ $# -gt 0 ] && shift
  extra=("$@")
  local json="$tmp/pollux-$case-$pair.json"
  "$pollux" testpmd --no-huge "${vdevs[@]}" --fwd "$mode" --burst 32 --nb-cores 1 \
    --total-num-mbufs 16384 --duration "$secs" --stats-period 1 --json "${extra[@]}" \
    2>"$tmp/pollux-$case-$pair.err" | tail -1 >"$json"
  local rates
  rates=$(pollux_rates "$json" "$field" "$ports")
  if [ -z "$rates" ]; then
    echo "pollux testpmd gave no rates for $case:" >&2; tail -20 "$tmp/pollux-$case-$pair.err" >&2; exit 1
  fi
  printf '%s\tpollux\t%s\t%s\t%s\n' "$case" "$pair" "$(echo "$rates" | median_of)" "$(echo $rates)" >>"$samples"
}

# compare CASE DPDK_FIELD DPDK_PORTS POLLUX_FIELD POLLUX_PORTS MODE
#   "DPDK_VDEVS..." "DPDK_EXTRA..." "POLLUX_VDEVS..." "POLLUX_EXTRA..."
compare() {
  local case=$1 df=$2 dp=$3 pf=$4 pp=$5 mode=$6 dv=$7 dx=$8 pv=$9 px=${10} pmode=${11:-$6}
  for k in $(seq 1 "$pairs"); do
    # shellcheck disable=SC2086 # word lists on purpose
    if [ $((k % 2)) -eq 1 ]; then
      run_dpdk "$case" "$k" "$df" "$dp" "$mode" $dv -- $dx
      run_pollux "$case" "$k" "$pf" "$pp" "$pmode" $pv -- $px
    else
      run_pollux "$case" "$k" "$pf" "$pp" "$pmode" $pv -- $px
      run_dpdk "$case" "$k" "$df" "$dp" "$mode" $dv -- $dx
    fi
  done
}

compare "io null0<->null1 (rx, both ports)" Rx 0,1 rx 0,1 io \
  "net_null0 net_null1" "" "null0 null1" ""
compare "txonly null0 (64 B)" Tx 0 tx 0 txonly \
  "net_null0" "" "null0" ""
compare "macswap null0<->null1 (rx, both ports)" Rx 0,1 rx 0,1 macswap \
  "net_null0 net_null1" "" "null0 null1" ""
# Bond: balance-xor layer3+4 over two null members; DPDK's bond is port 2
# (its members are ports 0 and 1), Pollux's members are inside its bond.
compare "bond balance-xor l3+4, 2 null, txonly multi-flow (tx)" Tx 2 tx 0 txonly \
  "net_null0 net_null1 net_bonding0,mode=2,slave=net_null0,slave=net_null1,xmit_policy=l34" \
  "--txonly-multi-flow --portmask=0x4 --port-topology=loop" \
  "null0 null1 bond0,mode=balance-xor,member=null0,member=null1,xmit_hash_policy=layer3+4" \
  "--txonly-multi-flow"
# balance-tlb: DPDK's mode 5 offers each burst to the members in load
# order with no per-frame hash; Pollux hashes each frame to its flow bucket
# and counts its bytes, as Linux's tlb does: not the same work inside the
# bond, the same generator on both sides.
compare "bond balance-tlb, 2 null, txonly multi-flow (tx)" Tx 2 tx 0 txonly \
  "net_null0 net_null1 net_bonding0,mode=5,slave=net_null0,slave=net_null1" \
  "--txonly-multi-flow --portmask=0x4 --port-topology=loop" \
  "null0 null1 bond0,mode=balance-tlb,member=null0,member=null1" \
  "--txonly-multi-flow"

mkdir -p "$root/target"
python3 - "$samples" "$tsc_mhz" "$secs" "$pairs" >"$out_md" <<'EOF'
import statistics, sys, collections, subprocess
path, tsc_mhz, secs, pairs = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
runs = collections.defaultdict(dict)  # case -> (side, pair) -> (median, rates)
order = []
for line in open(path):
    case, side, pair, med, rates = line.rstrip("\n").split("\t")
    if case not in order:
        order.append(case)
    runs[case][(side, int(pair))] = (float(med), rates)
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"{pairs} interleaved pairs per case, {secs} s per run, one forwarding core, burst 32, "
      f"4 KiB pages on both sides (--no-huge), {cpu}, TSC {tsc_mhz:.0f} MHz. A run's figure is the "
      "median of its per-second rates after 2 s; cycles/packet = TSC Hz / that rate.\n")
print("| case | DPDK 22.11 pps, median (min-max) | Pollux pps, median (min-max) | Pollux / DPDK, median of pairs (min-max) | cycles/packet DPDK / Pollux |")
print("|---|---|---|---|---|")
def fmt(v):
    return f"{v/1e6:.2f}M"
detail = []
for case in order:
    r = runs[case]
    ks = sorted({p for (_, p) in r})
    d = [r[("dpdk", k)][0] for k in ks if ("dpdk", k) in r]
    p = [r[("pollux", k)][0] for k in ks if ("pollux", k) in r]
    ratios = [r[("pollux", k)][0] / r[("dpdk", k)][0] for k in ks if ("dpdk", k) in r and ("pollux", k) in r and r[("dpdk", k)][0] > 0]
    dm, pm = statistics.median(d), statistics.median(p)
    print(f"| {case} | {fmt(dm)} ({fmt(min(d))}-{fmt(max(d))}) | {fmt(pm)} ({fmt(min(p))}-{fmt(max(p))}) | "
          f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) | "
          f"{tsc_mhz*1e6/dm:.1f} / {tsc_mhz*1e6/pm:.1f} |")
    for k in ks:
        for side in ("dpdk", "pollux"):
            if (side, k) in r:
                med, rates = r[(side, k)]
                detail.append(f"| {case} | {k} | {side} | {fmt(med)} | {' '.join(fmt(float(x)) for x in rates.split())} |")
print("\nEvery run (pair, side, its median, its per-second rates after the warm-up):\n")
print("| case | pair | side | median | per-second rates |")
print("|---|---|---|---|---|")
print("\n".join(detail))
EOF
sed -n '1,/^$/p;/^| case | DPDK/,/^$/p' "$out_md"
echo "(every sample in $out_md)"
