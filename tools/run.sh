#!/usr/bin/env bash
# tools/run.sh — install what is missing, build a release bollard-store in build/, run it.
#
#   tools/run.sh                      # one member, data in ./default.etcd, clients on 127.0.0.1:2379
#   tools/run.sh --data-dir /var/lib/bollard --listen-client-urls http://0.0.0.0:2379 ...
#
# Arguments are etcd's flags, passed to bollard-store unchanged.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=tools/deps.sh
source "$root/tools/deps.sh"
bollard_install_deps build

# Warnings stay errors in tools/test.sh (and CI); a user's release build is not stopped
# by a new compiler's warning.
if [ ! -f "$root/build/build.ninja" ]; then
  meson setup "$root/build" "$root" --buildtype=release >&2
else
  meson configure "$root/build" --buildtype=release >&2
fi
meson compile -C "$root/build" >&2
exec "$root/build/tools/bollard-store" "$@"
