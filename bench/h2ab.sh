#!/bin/bash
# h2ab.sh - the experimental HTTP/2 listener (--experimental-listen-h2-url)
# against the gRPC C-core port of the same bollard-store process, and etcd
# 3.4 in the same run: bollard-bench put (8 B keys, 256 B values, key space
# 1000, as bench/compare), alternating grpc / h2 / etcd, PAIRS rounds per
# load. Prints req/s, p50/p99 and server CPU us/req (utime+stime of the
# server process over the run, as perfkit's putload.sh).
# WATCH=1: bollard-bench watch as bench/compare's watch row instead (1000
# watchers on 100 keys over 10 streams, puts from 100 clients on 10
# connections, 256 B values, --total WATCH_TOTAL (20000) puts; LOADS ignored):
# events/s, event p50/p99 and server CPU us per delivered event.
# TLS=1 in the environment: every port https (a CA and a server certificate
# made with openssl in the temp dir; the same --cert-file/--key-file for
# both servers), bollard-bench --cacert (ordinary gRPC channels then).
# usage: bench/h2ab.sh [BUILD_DIR (build-rel)] [PAIRS (3)] [SECS (8)] [LOADS ("10/100 100/1000")]
b=${1:-build-rel}; pairs=${2:-3}; secs=${3:-8}; loads=${4:-"10/100 100/1000"}
src=$(cd "$(dirname "$0")/.." && pwd)
BIN=$src/$b/tools/bollard-store; BENCH=$src/$b/bench/bollard-bench
P=$((20000 + RANDOM % 9900)); d=$(mktemp -d /tmp/h2ab.XXXX)
sch=http; tlsf=; cacert=
if [ "${TLS:-0}" = 1 ]; then
  /usr/bin/python3 -c "import sys; sys.path.insert(0, '$src/tests/lib'); import tlscerts as t
t.make_ca('$d', 'ca'); t.make_cert('$d', 'srv', 'ca', 'h2ab', 'subjectAltName=IP:127.0.0.1\n')" || exit 1
  sch=https; tlsf="--cert-file $d/srv.pem --key-file $d/srv.key"; cacert="--cacert $d/ca.pem"
fi
flags() { # name dir client peer
  echo "--name $1 --data-dir $2 --listen-client-urls $sch://127.0.0.1:$3 --advertise-client-urls $sch://127.0.0.1:$3 $tlsf --listen-peer-urls http://127.0.0.1:$4 --initial-advertise-peer-urls http://127.0.0.1:$4 --initial-cluster $1=http://127.0.0.1:$4 --snapshot-count 100000 --quota-backend-bytes 8589934592"
}
$BIN $(flags a $d/b $P $((P+1))) --log-level warn --experimental-listen-h2-url $sch://127.0.0.1:$((P+2)) >$d/blog 2>&1 &
bpid=$!
etcd $(flags e $d/e $((P+3)) $((P+4))) --logger zap --log-level warn >$d/elog 2>&1 &
epid=$!
trap 'kill $bpid $epid 2>/dev/null; wait $bpid $epid 2>/dev/null; rm -rf $d' EXIT
for port in $P $((P+2)) $((P+3)); do
  for i in $(seq 50); do $BENCH range health --total 1 --timeout 0.5 $cacert --endpoints 127.0.0.1:$port >/dev/null 2>&1 && break; sleep 0.2; done
done
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
# CPU ticks of the server's threads by name (bollard-grpc, bollard-h2, bollard-node, ...)
threads() { for t in /proc/$1/task/*; do echo "$(cat $t/comm 2>/dev/null) $(awk '{print $14+$15}' $t/stat 2>/dev/null)"; done |
  awk 'NF==2 {a[$1]+=$2} END {for (k in a) print k, a[k]}' | sort; }
run() { # label pid port conns clients
  local s0 s1 out n rate lat
  s0=$(cpu $2); threads $2 >$d/t0
  out=$($BENCH put --duration $secs --conns $4 --clients $5 --key-space-size 1000 --key-size 8 --val-size 256 $cacert --endpoints 127.0.0.1:$3 --no-histogram 2>&1)
  s1=$(cpu $2); threads $2 >$d/t1
  n=$(echo "$out" | sed -n 's/.*: \([0-9]*\) ok in.*/\1/p' | head -1)
  rate=$(echo "$out" | sed -n 's/.* ok in [0-9.]* s: \([0-9.]*\)\/s.*/\1/p' | head -1)
  lat=$(echo "$out" | sed -n 's/.*p50 \([0-9.]*\).*p99 \([0-9.]*\).*/p50 \1 p99 \2/p' | head -1)
  printf "%-5s put %-8s %9s req/s  %-26s server CPU %s us/req  load %s  [%s]\n" "$1" "$4/$5" "${rate:-?}" "$lat" \
    "$(awk -v t=$((s1-s0)) -v n=${n:-0} 'BEGIN{ if (n>0) printf "%.1f", t*10000.0/n; else print "-" }')" \
    "$(cut -d' ' -f1 /proc/loadavg)" \
    "$(join $d/t0 $d/t1 | awk -v n=${n:-0} '$3>$2+1 && n>0 && $1 ~ /bollard-(grpc|h2|node)/ {printf "%s %.1f ", substr($1,9), ($3-$2)*10000.0/n}')"
}
wrun() { # label pid port
  local s0 s1 out n rate lat
  s0=$(cpu $2); threads $2 >$d/t0
  out=$($BENCH watch --watchers 1000 --watch-keys 100 --streams 10 --conns 10 --clients 100 --val-size 256 --total ${WATCH_TOTAL:-20000} $cacert --endpoints 127.0.0.1:$3 --no-histogram 2>&1)
  s1=$(cpu $2); threads $2 >$d/t1
  n=$(echo "$out" | sed -n 's/^event: \([0-9]*\) ok in.*/\1/p' | head -1)
  rate=$(echo "$out" | sed -n 's/^event: .* ok in [0-9.]* s: \([0-9.]*\)\/s.*/\1/p' | head -1)
  lat=$(echo "$out" | sed -n '/^event:/,/^put:/s/.*p50 \([0-9.]*\).*p99 \([0-9.]*\).*/p50 \1 p99 \2/p' | head -1)
  printf "%-5s watch %9s events/s  %-26s server CPU %s us/event  load %s  [%s]\n" "$1" "${rate:-?}" "$lat" \
    "$(awk -v t=$((s1-s0)) -v n=${n:-0} 'BEGIN{ if (n>0) printf "%.2f", t*10000.0/n; else print "-" }')" \
    "$(cut -d' ' -f1 /proc/loadavg)" \
    "$(join $d/t0 $d/t1 | awk -v n=${n:-0} '$3>$2+1 && n>0 && $1 ~ /bollard-(grpc|h2|node)/ {printf "%s %.2f ", substr($1,9), ($3-$2)*10000.0/n}')"
}
if [ "${WATCH:-0}" = 1 ]; then
  for i in $(seq $pairs); do
    wrun grpc $bpid $P; wrun h2 $bpid $((P+2)); wrun etcd $epid $((P+3))
  done
  exit 0
fi
for l in $loads; do
  c=${l%/*}; k=${l#*/}
  for i in $(seq $pairs); do
    run grpc $bpid $P $c $k; run h2 $bpid $((P+2)) $c $k; run etcd $epid $((P+3)) $c $k
  done
done
