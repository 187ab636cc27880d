#!/usr/bin/env bash
# The one test command: installs what the tests need when it is missing, then
# runs the format check, clippy, rustdoc, the dependency-tree check and every
# test. Works on a fresh Debian/Ubuntu machine with Rust; run as root or with
# sudo available for the apt-get step.
#
#   scripts/test.sh            everything
#   scripts/test.sh -- FILTER  everything, tests filtered by name
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n==> %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "test.sh: need root (or sudo) to install: $*" >&2; exit 1
  fi
}

# --- system packages ---------------------------------------------------------
# Real servers and clients for the integration tests, openssl as the
# independent certificate verifier, PAM's pam_exec for IAM users.
need_pkgs=()
command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || need_pkgs+=(mariadb-server)
command -v mariadb >/dev/null || need_pkgs+=(mariadb-client)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_pkgs+=(postgresql)
command -v psql >/dev/null || need_pkgs+=(postgresql-client)
command -v openssl >/dev/null || need_pkgs+=(openssl)
# The servers' PAM stack runs the IAM token verifier with the system Python.
[ -x /usr/bin/python3 ] || need_pkgs+=(python3)
compgen -G '/usr/lib/*/security/pam_exec.so' >/dev/null || compgen -G '/lib/*/security/pam_exec.so' >/dev/null ||
  need_pkgs+=(libpam-modules)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_pkgs+=(python3-venv)
# A real bastion for --via ssh:// and socks5h:// (ssh -D), and its client.
[ -x /usr/sbin/sshd ] || need_pkgs+=(openssh-server)
command -v ssh >/dev/null || need_pkgs+=(openssh-client)
command -v ssh-keygen >/dev/null || need_pkgs+=(openssh-client)
# curl reads the proxy's health endpoints as a probe would; promtool
# (Debian's prometheus) checks its metrics.
command -v curl >/dev/null || need_pkgs+=(curl)
command -v promtool >/dev/null || need_pkgs+=(prometheus)
# pgrep/pkill: the tunnel tests check that no ssh is left behind.
command -v pgrep >/dev/null || need_pkgs+=(procps)
# script (a pseudo-terminal for ls), unshare (network/mount namespaces).
command -v script >/dev/null || need_pkgs+=(bsdutils)
command -v unshare >/dev/null || need_pkgs+=(util-linux)
# Node drivers (node-pg, mysql2, postgres.js) read rdsconn env's settings.
command -v node >/dev/null || need_pkgs+=(nodejs)
command -v npm >/dev/null || need_pkgs+=(npm)
# pgjdbc (a Java client run from source) goes through the transaction pool.
command -v javac >/dev/null || need_pkgs+=(default-jdk-headless)
[ -f /usr/share/java/postgresql.jar ] || need_pkgs+=(libpostgresql-jdbc-java)
# The harness builds a PAM module that asks a second-factor question.
[ -f /usr/include/security/pam_modules.h ] || need_pkgs+=(libpam0g-dev)
command -v gcc >/dev/null || need_pkgs+=(gcc)
# The release checks (scripts/test-release.sh): the .deb's man pages and
# systemd unit, cargo auditable's section, the image's CA certificates.
command -v man >/dev/null || need_pkgs+=(man-db)
command -v systemd-analyze >/dev/null || need_pkgs+=(systemd)
command -v objcopy >/dev/null || need_pkgs+=(binutils)
# @NAME completion is tested in bash, fish and zsh.
command -v fish >/dev/null || need_pkgs+=(fish)
command -v zsh >/dev/null || need_pkgs+=(zsh)
[ -f /etc/ssl/certs/ca-certificates.crt ] || need_pkgs+=(ca-certificates)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  step "installing ${need_pkgs[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  # Install only; the tests start their own throwaway servers.
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# --- Python tools (botocore oracle, AWS CLI for benchmarks) -------------------
venv="$root/.venv"
stamp="$venv/.requirements.sha256"
want=$(sha256sum scripts/requirements-test.txt | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  step "creating $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r scripts/requirements-test.txt
  echo "$want" >"$stamp"
fi
export RDSCONN_TEST_PYTHON="$venv/bin/python"

# --- Node drivers ---------------------------------------------------------------
node_dir="$root/tests/node"
node_stamp="$node_dir/node_modules/.lock.sha256"
want=$(sha256sum "$node_dir/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$node_stamp" 2>/dev/null)" != "$want" ]; then
  step "installing the Node drivers into $node_dir"
  (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" >"$node_stamp"
fi
export RDSCONN_TEST_NODE_MODULES="$node_dir/node_modules"

# --- Rust components -----------------------------------------------------------
if command -v rustup >/dev/null; then
  for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
  done
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings

step "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps --quiet

step "dependency tree"
scripts/check-deps.sh

# Licenses (exactly those in deny.toml), bans and sources (crates.io only).
if ! command -v cargo-deny >/dev/null; then
  step "installing cargo-deny"
  cargo install --locked cargo-deny@0.20.2
fi
step "cargo deny check licenses bans sources"
cargo deny --locked check licenses bans sources

step "cargo test"
filter=()
if [ "${1:-}" = "--" ]; then shift; filter=("$@"); fi
cargo test --locked --doc -- "${filter[@]}"
# Library, binary and integration tests; the benchmarks (benches/) are
# built by clippy above and run by scripts/bench-*.sh, not here.
cargo test --locked --lib --bins --tests -- "${filter[@]}"

# The release machinery: .deb, archive, image root, actionlint, cargo package.
if [ "${#filter[@]}" -eq 0 ]; then
  scripts/test-release.sh
fi
