# tools/deps.sh — the Debian 12 packages Bollard builds and tests with, installed when missing.
# Sourced by tools/run.sh and tools/test.sh (one list, one install path).

BOLLARD_PACKAGES=(
  # build
  meson ninja-build pkg-config
  libraft-dev libuv1-dev liblmdb-dev libssl-dev
  libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
  libgrpc-dev
  # sanitizer runtime for clang builds
  libclang-rt-14-dev
  # tests: the reference server and real clients
  etcd-server etcd-client python3-etcd3 python3-grpcio python3-protobuf
)

bollard_missing_packages() {
  local p
  for p in "${BOLLARD_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
      printf '%s\n' "$p"
    fi
  done
}

# Installs whatever is missing (apt-get update only then); needs root or sudo.
bollard_install_deps() {
  local missing
  mapfile -t missing < <(bollard_missing_packages)
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
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${missing[@]}"
  # etcd-server's package may start a system etcd on 127.0.0.1:2379 (in a container
  # without systemd it does not); the tests never use that port.
}
