#!/usr/bin/env bash
# How testpmd's packet rate grows from one forwarding lcore to two, each
# lcore polling its own queues, on null ports: Pollux and DPDK 22.11, the
# same layout on both sides.
#
#   benches/lcore-scaling.sh [PAIRS] [SECONDS]     (default 5 pairs of 5 s)
#
# Layout: two null ports with 2 rx and 2 tx queues each, io forwarding,
# burst 32, 4 streams (port 0 queue q <-> port 1 queue q). With 1 lcore all
# four streams run on CPU 1; with 2 lcores each lcore runs the two streams
# of its queue, on CPUs 1 and 0. The main lcore is on CPU 0 in both
# programs (Pollux pins it there; DPDK: --lcores 0@0,1@1,2@0), so with two
# forwarding lcores it shares CPU 0 with the second one; it sleeps between
# its once-a-second stats.
#
# The statistic, the same on both sides: packets received by both ports
# between the first and the last one-second stats print, divided by the
# time between them (steady state; start-up and shutdown excluded). Runs
# are interleaved (pollux 1, pollux 2, dpdk 1, dpdk 2, repeated) and each
# ratio's median and range printed; every sample goes to
# target/lcore-scaling.md for docs/performance.md.
set -euo pipefail
pairs=${1:-5}
secs=${2:-5}
cd "$(dirname "$0")/.."
root=$(pwd)
command -v dpdk-testpmd >/dev/null || { echo "dpdk-testpmd not found: apt-get install dpdk-dev librte-net-null23" >&2; exit 1; }
cargo build --release --quiet -p pollux-cli
pollux="$root/target/release/pollux"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out="$root/target/lcore-scaling.md"

# Pollux: the live table's cumulative rx-packets per port, every second.
run_pollux() { # NB_CORES -> pps
  "$pollux" testpmd --vdev null0 --vdev null1 --rxq 2 --txq 2 --nb-cores "$1" \
    --fwd io --burst 32 --duration "$secs" --stats-period 1 >"$tmp/p.log" 2>&1
  python3 - "$tmp/p.log" <<'PY'
import re, sys
tables = []
cur = []
for line in open(sys.argv[1]):
    f = line.split()
    if f[:2] == ["port", "name"]:
        if cur: tables.append(sum(cur))
        cur = []
    elif len(f) == 7 and f[0].isdigit():
        cur.append(int(f[2]))
    elif line.startswith("----"):
        break
if cur: tables.append(sum(cur))
# tables are one second apart (--stats-period 1)
print(int((tables[-1] - tables[0]) / (len(tables) - 1)))
PY
}

# DPDK: "RX-packets: N" per port in each one-second "NIC statistics" block.
run_dpdk() { # NB_CORES -> pps
  timeout -s INT $((secs + 2)) dpdk-testpmd --no-huge -m 1024 --no-pci --lcores '0@0,1@1,2@0' \
    --file-prefix "pollux-scale-$$" --vdev net_null0 --vdev net_null1 -- \
    --forward-mode=io --burst=32 --rxq=2 --txq=2 --nb-cores="$1" \
    --total-num-mbufs=16384 --stats-period 1 >"$tmp/d.log" 2>&1 || true
  python3 - "$tmp/d.log" <<'PY'
import sys
blocks = []
cur = {}
port = None
for line in open(sys.argv[1]):
    if "NIC statistics for port" in line:
        port = int(line.split("port")[1].split()[0])
        if port in cur:
            blocks.append(sum(cur.values())); cur = {}
    f = line.split()
    if len(f) >= 2 and f[0] == "RX-packets:" and port is not None:
        cur[port] = int(f[1])
if len(cur) == 2: blocks.append(sum(cur.values()))
if len(blocks) < 3:
    sys.exit("dpdk-testpmd printed %d stats blocks" % len(blocks))
# drop the first block (start-up) and the last (may be cut short)
b = blocks[1:-1] if len(blocks) > 3 else blocks[1:]
print(int((b[-1] - b[0]) / (len(b) - 1)))
PY
}

echo "| pair | Pollux 1 lcore | Pollux 2 lcores | ratio | DPDK 1 lcore | DPDK 2 lcores | ratio | Pollux/DPDK at 2 |" >"$out"
echo "|---|---:|---:|---:|---:|---:|---:|---:|" >>"$out"
for i in $(seq 1 "$pairs"); do
  p1=$(run_pollux 1); p2=$(run_pollux 2); d1=$(run_dpdk 1); d2=$(run_dpdk 2)
  line=$(python3 -c "print('| $i | $p1 | $p2 | %.2f | $d1 | $d2 | %.2f | %.2f |' % ($p2/$p1, $d2/$d1, $p2/$d2))")
  echo "$line" | tee -a "$out"
done
python3 - "$out" <<'PY'
import statistics, sys
rows = [l.split("|")[1:-1] for l in open(sys.argv[1]) if l.startswith("| ") and l.split("|")[1].strip().isdigit()]
for name, col in [("Pollux 2/1 lcores", 3), ("DPDK 2/1 lcores", 6), ("Pollux/DPDK at 2 lcores", 7)]:
    v = [float(r[col]) for r in rows]
    print(f"{name}: median {statistics.median(v):.2f} (range {min(v):.2f}-{max(v):.2f}, {len(v)} pairs)")
PY
