#!/usr/bin/env bash
# Fails if the dependency tree breaks rdsconn's TLS rules: exactly one rustls
# (0.23), one crypto provider (aws-lc-rs, so no ring), no OpenSSL, and no
# rustls-pemfile (unmaintained, RUSTSEC-2025-0134). Checked for every target
# platform, with normal, build and dev dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

tree=$(cargo tree --locked --target all -e normal,build,dev --prefix none --format '{p}' | sed 's/ (.*//' | sort -u)
fail=0
bad() { echo "check-deps: $*" >&2; fail=1; }

rustls=$(grep -E '^rustls v' <<<"$tree" || true)
if [ "$(grep -c . <<<"$rustls")" -ne 1 ]; then
  bad "expected exactly one rustls, found: $(tr '\n' ' ' <<<"$rustls")"
elif ! grep -q '^rustls v0\.23\.' <<<"$rustls"; then
  bad "expected rustls 0.23, found $rustls"
fi
grep -q '^aws-lc-rs v' <<<"$tree" || bad "aws-lc-rs (the crypto provider) is missing"
for crate in ring openssl-sys openssl native-tls rustls-pemfile boring-sys; do
  if grep -q "^$crate v" <<<"$tree"; then
    bad "$crate is in the tree: $(cargo tree --locked --target all -e normal,build,dev -i "$crate" 2>/dev/null | head -n 8 | tr '\n' ' ')"
  fi
done
[ "$fail" -eq 0 ] && echo "check-deps: ok ($rustls, aws-lc-rs only, no OpenSSL)"
exit "$fail"
