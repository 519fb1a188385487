#!/bin/bash
# ckptab.sh - two bollard-store binaries A and B, one member each, started
# side by side and loaded in alternation (A B A B ...) with bollard-bench put
# (8 B keys, 256 B values, key space 1000, as bench/compare and h2ab.sh), so
# both meet the same box load within seconds of each other. Per run, per
# put: the server's CPU (utime+stime), the loop thread's (bollard-node) CPU
# from its schedstat (ns, not ticks) and its minor faults, the process's
# write_bytes (/proc/PID/io), what the data dir's block device wrote, the
# LMDB commits (etcd_disk_backend_commit_duration_seconds_count); and
# put/s, p50/p99, the database's growth in pages (its last page), the
# server's peak RSS so far (VmHWM) and the load average. Lines start with
# the label: `grep '^A '` gives one side.
# usage: bench/ckptab.sh BIN_A BIN_B [ROUNDS (3)] [SECS (8)] [LOADS ("1/1 10/100 100/1000")]
#   A load is "conns/clients" as in h2ab.sh: 10/100 = 10 connections, 100
#   clients. BENCH=path overrides build-rel's bollard-bench; EXTRA_A /
#   EXTRA_B: more flags for that store; DIR_A / DIR_B: a directory to keep
#   that store's data in (default: one temp dir for both).
# "disk" is the sectors written of the block device under the store's data
#   dir (/sys/block/DEV/stat): the whole box's writes, unless each store has
#   a file system of its own (a loop-mounted ext4 image per store, say).
#   write_bytes counts each folio a write dirtied whole, where ext4 writes
#   back only the blocks written: with large folios it overstates what a
#   writer using pwrite sends to the disk (4096 one-page pwrites into a file
#   written in 1 MiB writes: 256 MiB of write_bytes, 4 MiB written).
A=$1; B=$2; rounds=${3:-3}; secs=${4:-8}; loads=${5:-"1/1 10/100 100/1000"}
src=$(cd "$(dirname "$0")/.." && pwd)
BENCH=${BENCH:-$src/build-rel/bench/bollard-bench}
[ -x "$A" ] && [ -x "$B" ] && [ -x "$BENCH" ] || { echo "usage: $0 BIN_A BIN_B [ROUNDS] [SECS] [LOADS]" >&2; exit 2; }
P=$((20000 + RANDOM % 9000)); d=$(mktemp -d /tmp/ckptab.XXXX)
flags() { # name dir client peer metrics
  echo "--name $1 --data-dir $2 --listen-client-urls http://127.0.0.1:$3 --advertise-client-urls http://127.0.0.1:$3 --listen-peer-urls http://127.0.0.1:$4 --initial-advertise-peer-urls http://127.0.0.1:$4 --initial-cluster $1=http://127.0.0.1:$4 --listen-metrics-urls http://127.0.0.1:$5 --snapshot-count 100000 --quota-backend-bytes 8589934592 --log-level warn"
}
da=${DIR_A:-$d}/ckptab-a; db=${DIR_B:-$d}/ckptab-b
mkdir -p "$da" "$db" || exit 1
$A $(flags a $da $P $((P+1)) $((P+2))) $EXTRA_A >$d/alog 2>&1 &
apid=$!
$B $(flags b $db $((P+3)) $((P+4)) $((P+5))) $EXTRA_B >$d/blog 2>&1 &
bpid=$!
sleep 1
for x in $apid $bpid; do
  kill -0 $x 2>/dev/null || { echo "a store did not start:"; tail -5 $d/alog $d/blog; kill $apid $bpid 2>/dev/null; rm -rf $d "$da" "$db"; exit 1; }
done
trap 'kill $apid $bpid 2>/dev/null; wait $apid $bpid 2>/dev/null; for x in a b; do grep -qi "fatal\|error" $d/${x}log && { echo "store $x log:"; tail -5 $d/${x}log; }; done; rm -rf $d "$da" "$db"' EXIT
for port in $P $((P+3)); do
  for i in $(seq 50); do $BENCH range health --total 1 --timeout 0.5 --endpoints 127.0.0.1:$port >/dev/null 2>&1 && break; sleep 0.2; done
done
node_tid() { for t in /proc/$1/task/*; do [ "$(cat $t/comm)" = bollard-node ] && basename $t; done | head -1; }
devof() { local s; s=$(basename "$(df --output=source "$1" | tail -1)"); [ -e /sys/block/$s/stat ] || s=$(basename "$(dirname "$(readlink -f /sys/class/block/$s)")"); echo $s; }
deva=$(devof "$da"); devb=$(devof "$db")
snap() { # pid metrics-port dev -> "cpu_ticks loop_ns loop_minflt write_bytes commits db_pages dev_sectors_written"
  local t; t=$(node_tid $1)
  echo "$(awk '{print $14+$15}' /proc/$1/stat) $(cut -d' ' -f1 /proc/$1/task/$t/schedstat)" \
       "$(awk '{print $10}' /proc/$1/task/$t/stat) $(awk '/^write_bytes/ {print $2}' /proc/$1/io)" \
       "$(curl -s http://127.0.0.1:$2/metrics | awk '/^etcd_disk_backend_commit_duration_seconds_count/ {print $2}')" \
       "$(curl -s http://127.0.0.1:$2/metrics | awk '/^etcd_mvcc_db_total_size_in_bytes / {printf "%d", $2/4096}')" \
       "$(awk '{print $7}' /sys/block/$3/stat 2>/dev/null || echo 0)"
}
run() { # label pid port metrics-port conns clients dev
  local s0 s1 out n rate lat
  s0=$(snap $2 $4 $7)
  out=$($BENCH put --duration $secs --conns $5 --clients $6 --key-space-size 1000 --key-size 8 --val-size 256 --endpoints 127.0.0.1:$3 --no-histogram 2>&1)
  s1=$(snap $2 $4 $7)
  n=$(echo "$out" | sed -n 's/.*: \([0-9]*\) ok in.*/\1/p' | head -1)
  rate=$(echo "$out" | sed -n 's/.* ok in [0-9.]* s: \([0-9.]*\)\/s.*/\1/p' | head -1)
  lat=$(echo "$out" | sed -n 's/.*p50 \([0-9.]*\).*p99 \([0-9.]*\).*/\1 \2/p' | head -1)
  echo "$1 $5/$6 $rate $lat $n $s0 $s1 $(cut -d' ' -f1 /proc/loadavg) $(awk '/^VmHWM/ {print $2}' /proc/$2/status)" | awk '{
    n = $6; if (n <= 0) n = 1
    printf "%s put %-8s %8.0f put/s  p50 %s p99 %s ms  CPU %5.1f us/put  loop %5.1f us/put  loop faults %5.2f/put  %6.0f B/put  disk %6.0f B/put  %5.3f commits/put  +%d pages  peak RSS %d MB  load %s\n",
      $1, $2, $3, $4, $5, ($14-$7)*10000.0/n, ($15-$8)/1000.0/n, ($16-$9)/n, ($17-$10)/n, ($20-$13)*512.0/n, ($18-$11)/n, $19-$12, $22/1024, $21 }'
}
for l in $loads; do
  c=${l%/*}; k=${l#*/}
  for i in $(seq $rounds); do
    run A $apid $P $((P+2)) $c $k $deva; run B $bpid $((P+3)) $((P+5)) $c $k $devb
  done
done
