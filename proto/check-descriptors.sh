#!/bin/sh
# Dev-time check (not part of the build): proves that proto/etcd/*.proto are
# wire-identical to the upstream etcd 3.4 definitions.
#
# Builds descriptor sets for our files and for etcd's, then compares every
# message (fields: name, number, type, label, type_name, oneof membership,
# packed option, nested types), every enum (values and numbers) and every
# service method (name, input, output, client/server streaming).
#
# Upstream sources default to Debian's golang-etcd-server-dev; override with
# ETCD_SRC=/path/to/go.etcd.io/etcd. Their gogoproto / google.api imports are
# stripped with sed into a temp copy, so those files need not be installed.
# Needs: protoc (protobuf-compiler), python3 with google.protobuf (python3-protobuf).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
ETCD_SRC=${ETCD_SRC:-/usr/share/gocode/src/go.etcd.io/etcd}
PYTHON=${PYTHON:-/usr/bin/python3}
[ -x "$PYTHON" ] || PYTHON=python3

for f in etcdserver/etcdserverpb/rpc.proto mvcc/mvccpb/kv.proto auth/authpb/auth.proto; do
  [ -f "$ETCD_SRC/$f" ] || { echo "missing upstream $ETCD_SRC/$f" >&2; exit 2; }
done
command -v protoc >/dev/null || { echo "protoc not found (apt-get install protobuf-compiler)" >&2; exit 2; }
"$PYTHON" -c 'import google.protobuf' 2>/dev/null ||
  { echo "$PYTHON lacks google.protobuf (apt-get install python3-protobuf)" >&2; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# Upstream, stripped of code-generation options and HTTP annotations, laid out
# flat so that its imports resolve by bare file name like ours.
strip() {
  sed -e '/^import "gogoproto\/gogo.proto";/d' \
      -e '/^import "google\/api\/annotations.proto";/d' \
      -e '/^option (gogoproto\./d' \
      -e 's/\[(gogoproto\.[^]]*\]//g' \
      -e 's#^import "etcd/mvcc/mvccpb/kv.proto";#import "kv.proto";#' \
      -e 's#^import "etcd/auth/authpb/auth.proto";#import "auth.proto";#' \
      "$1"
}
mkdir "$tmp/up"
strip "$ETCD_SRC/mvcc/mvccpb/kv.proto" > "$tmp/up/kv.proto"
strip "$ETCD_SRC/auth/authpb/auth.proto" > "$tmp/up/auth.proto"
# rpc.proto: additionally drop every `option (google.api.http) = { ... };` block.
strip "$ETCD_SRC/etcdserver/etcdserverpb/rpc.proto" | "$PYTHON" -c '
import re, sys
src = sys.stdin.read()
out, i = [], 0
for m in re.finditer(r"option\s*\(google\.api\.http\)\s*=\s*\{", src):
    if m.start() < i:
        continue
    out.append(src[i:m.start()])
    depth, j = 1, m.end()
    while depth:
        depth += {"{": 1, "}": -1}.get(src[j], 0)
        j += 1
    k = src.index(";", j)          # the terminating semicolon of the option
    i = k + 1
out.append(src[i:])
sys.stdout.write("".join(out))
' > "$tmp/up/rpc.proto"

protoc -I"$tmp/up" --include_imports --descriptor_set_out="$tmp/upstream.pb" \
  kv.proto auth.proto rpc.proto
protoc -I"$here/etcd" -I"$here/bollard" --include_imports --descriptor_set_out="$tmp/ours.pb" \
  kv.proto auth.proto rpc.proto raftcmd.proto

"$PYTHON" - "$tmp/upstream.pb" "$tmp/ours.pb" <<'PY'
import sys
from google.protobuf import descriptor_pb2 as d

def load(path):
    fds = d.FileDescriptorSet()
    with open(path, "rb") as f:
        fds.ParseFromString(f.read())
    return {f.name: f for f in fds.file}

up, ours = load(sys.argv[1]), load(sys.argv[2])
FT = d.FieldDescriptorProto
tname = lambda v: FT.Type.Name(v)
lname = lambda v: FT.Label.Name(v)

errors = []
stats = {"messages": 0, "fields": 0, "enums": 0, "enum_values": 0,
         "services": 0, "methods": 0}

def field_sig(msg, f):
    return (f.number, tname(f.type), lname(f.label), f.type_name,
            msg.oneof_decl[f.oneof_index].name if f.HasField("oneof_index") else None,
            f.options.packed if f.options.HasField("packed") else None,
            f.json_name, f.proto3_optional)

def cmp_enum(where, a, b):
    stats["enums"] += 1
    av = [(v.name, v.number) for v in a.value]
    bv = [(v.name, v.number) for v in b.value]
    stats["enum_values"] += len(av)
    if av != bv:
        errors.append(f"enum {where}: upstream {av} != ours {bv}")

def cmp_msg(where, a, b):
    stats["messages"] += 1
    af = [f.name for f in a.field]
    bf = [f.name for f in b.field]
    if af != bf:
        errors.append(f"message {where}: field list upstream {af} != ours {bf}")
    bmap = {f.name: f for f in b.field}
    for f in a.field:
        stats["fields"] += 1
        g = bmap.get(f.name)
        if g is None:
            continue
        if field_sig(a, f) != field_sig(b, g):
            errors.append(f"field {where}.{f.name}: upstream {field_sig(a, f)} != ours {field_sig(b, g)}")
    ao = [o.name for o in a.oneof_decl]; bo = [o.name for o in b.oneof_decl]
    if ao != bo:
        errors.append(f"message {where}: oneofs upstream {ao} != ours {bo}")
    cmp_named(where, a.nested_type, b.nested_type, cmp_msg, "nested message")
    cmp_named(where, a.enum_type, b.enum_type, cmp_enum, "nested enum")

def cmp_method(where, a, b):
    stats["methods"] += 1
    sa = (a.input_type, a.output_type, a.client_streaming, a.server_streaming)
    sb = (b.input_type, b.output_type, b.client_streaming, b.server_streaming)
    if sa != sb:
        errors.append(f"method {where}: upstream {sa} != ours {sb}")

def cmp_service(where, a, b):
    stats["services"] += 1
    cmp_named(where, a.method, b.method, cmp_method, "method")

def cmp_named(where, alist, blist, fn, kind):
    amap = {x.name: x for x in alist}; bmap = {x.name: x for x in blist}
    for n in sorted(set(amap) - set(bmap)):
        errors.append(f"{kind} {where}.{n}: missing in ours")
    for n in sorted(set(bmap) - set(amap)):
        errors.append(f"{kind} {where}.{n}: extra in ours")
    for n in amap:
        if n in bmap:
            fn(f"{where}.{n}", amap[n], bmap[n])

for name in ("kv.proto", "auth.proto", "rpc.proto"):
    a, b = up[name], ours[name]
    before = dict(stats)
    if a.package != b.package:
        errors.append(f"{name}: package upstream {a.package} != ours {b.package}")
    if a.syntax != b.syntax:
        errors.append(f"{name}: syntax upstream {a.syntax!r} != ours {b.syntax!r}")
    if sorted(a.dependency) != sorted(b.dependency):
        errors.append(f"{name}: imports upstream {list(a.dependency)} != ours {list(b.dependency)}")
    cmp_named(a.package, a.message_type, b.message_type, cmp_msg, "message")
    cmp_named(a.package, a.enum_type, b.enum_type, cmp_enum, "enum")
    cmp_named(a.package, a.service, b.service, cmp_service, "service")
    print(f"{name:11s} package {b.package:13s} " + ", ".join(
        f"{k} {stats[k] - before[k]}" for k in stats))

# raftcmd.proto has no upstream; just check the envelope resolves as intended.
r = ours["raftcmd.proto"]
req = {m.name: m for m in r.message_type}["Request"]
print("raftcmd.proto package bollard       Request op oneof: " + ", ".join(
    f"{f.name}={f.number}:{f.type_name}" for f in req.field if f.HasField("oneof_index")))

if errors:
    print(f"\nFAIL: {len(errors)} difference(s)")
    for e in errors:
        print("  " + e)
    sys.exit(1)
print("\nOK: etcd protos are wire-identical to upstream etcd 3.4")
PY
