# tools/deps.sh — the Debian 12 packages Bollard builds and tests with, installed when missing.
# Sourced by tools/run.sh (build packages) and tools/test.sh (build + test packages):
# one list, one install path.

BOLLARD_BUILD_PACKAGES=(
  gcc meson ninja-build pkg-config
  libraft-dev libuv1-dev liblmdb-dev libssl-dev libcrypt-dev libjansson-dev
  libprotobuf-c-dev protobuf-c-compiler
  libgrpc-dev
  libh2o-dev
  libnghttp2-dev
  zlib1g-dev
)
BOLLARD_TEST_PACKAGES=(
  protobuf-compiler
  # sanitizer runtime for clang builds
  libclang-rt-14-dev
  # the reference server and real clients
  etcd-server etcd-client python3-etcd3 python3-grpcio python3-protobuf
  # network namespaces, veth pairs and a bridge for the partition test
  iproute2
)

# Prints the packages of the given list names ("build", "test") that are not installed.
bollard_missing_packages() {
  local p pkgs=()
  for l in "$@"; do
    case "$l" in
      build) pkgs+=("${BOLLARD_BUILD_PACKAGES[@]}") ;;
      test) pkgs+=("${BOLLARD_TEST_PACKAGES[@]}") ;;
    esac
  done
  for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
      printf '%s\n' "$p"
    fi
  done
}

# bollard_install_deps build [test]: installs whatever is missing (apt-get update only
# then); needs root or sudo.
bollard_install_deps() {
  local missing
  mapfile -t missing < <(bollard_missing_packages "$@")
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  echo "installing missing Debian packages: ${missing[*]}" >&2
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo=(sudo)
    else
      echo "error: not root and no sudo; install these packages: ${missing[*]}" >&2
      return 1
    fi
  fi
  # Debian's etcd-server starts a system etcd on 127.0.0.1:2379, the port a Bollard
  # store uses by default; the tests only need its binary, so keep its service from
  # starting during this install (policy-rc.d is Debian's switch for that).
  local policy=/usr/sbin/policy-rc.d own_policy=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
    own_policy=1
  fi
  local rc=0
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      "${missing[@]}" || rc=$?
  [ -z "$own_policy" ] || "${sudo[@]}" rm -f "$policy"
  return "$rc"
}
