#!/usr/bin/env bash
# The GitHub Action (action.yml): installs the rdsconn release archive for
# this runner, checked against the release's SHA256SUMS, puts it on the PATH
# and runs `rdsconn check` with the inputs, the report in the job summary.
#
# Inputs come as INPUT_* variables (see action.yml). RDSCONN_RELEASE_URL
# replaces https://github.com/REPOSITORY/releases/download/vVERSION (a
# mirror; the tests serve a local archive); RDSCONN_TARGET replaces the
# target triple found from the runner.
set -euo pipefail

fail() { echo "::error title=rdsconn::$*" >&2; exit 1; }

: "${GITHUB_PATH:?}" "${GITHUB_OUTPUT:?}" "${GITHUB_STEP_SUMMARY:?}"
tmp=${RUNNER_TEMP:-${TMPDIR:-/tmp}}

target=${RDSCONN_TARGET:-}
if [ -z "$target" ]; then
  case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) target=x86_64-unknown-linux-gnu ;;
    Linux-aarch64 | Linux-arm64) target=aarch64-unknown-linux-gnu ;;
    Darwin-x86_64) target=x86_64-apple-darwin ;;
    Darwin-arm64 | Darwin-aarch64) target=aarch64-apple-darwin ;;
    *) fail "no rdsconn release for $(uname -s) $(uname -m)" ;;
  esac
fi

version=${INPUT_VERSION:-latest}
version=${version#v}
case "$version" in
  latest | [0-9]*.[0-9]*.[0-9]*) ;;
  *) fail "version must be latest or X.Y.Z, not '$version'" ;;
esac
repo=${INPUT_REPOSITORY:-rdsconn/rdsconn}
if [ -n "${RDSCONN_RELEASE_URL:-}" ]; then
  base=${RDSCONN_RELEASE_URL%/}
elif [ "$version" = latest ]; then
  base="https://github.com/$repo/releases/latest/download"
else
  base="https://github.com/$repo/releases/download/v$version"
fi

sha256() {
  if command -v sha256sum >/dev/null; then sha256sum "$1"; else shasum -a 256 "$1"; fi | cut -d' ' -f1
}

dir=$(mktemp -d "$tmp/rdsconn.XXXXXX")
curl -fsSL --retry 3 --proto '=https,http' -o "$dir/SHA256SUMS" "$base/SHA256SUMS" ||
  fail "downloading $base/SHA256SUMS"
# The line of this target's archive: "<sha256>  rdsconn-VERSION-TARGET.tar.gz".
line=$(grep -E "^[0-9a-f]{64}  rdsconn-[0-9][0-9A-Za-z.+-]*-$target\.tar\.gz$" "$dir/SHA256SUMS" | head -n1 || true)
[ -n "$line" ] || fail "SHA256SUMS at $base lists no archive for $target"
want=${line%%  *}
archive=${line#*  }
curl -fsSL --retry 3 --proto '=https,http' -o "$dir/$archive" "$base/$archive" ||
  fail "downloading $base/$archive"
got=$(sha256 "$dir/$archive")
[ "$got" = "$want" ] || fail "checksum mismatch for $archive: SHA256SUMS says $want, the download is $got"
tar -xzf "$dir/$archive" -C "$dir"
bin_dir="$dir/${archive%.tar.gz}"
[ -x "$bin_dir/rdsconn" ] || fail "$archive holds no rdsconn"
echo "$bin_dir" >>"$GITHUB_PATH"
echo "path=$bin_dir" >>"$GITHUB_OUTPUT"
"$bin_dir/rdsconn" --version

case "${INPUT_CHECK:-true}" in
  false) exit 0 ;;
  true) ;;
  *) fail "check must be true or false, not '$INPUT_CHECK'" ;;
esac

args=(check)
output=${INPUT_OUTPUT:-text}
case "$output" in text | json) args+=(--output "$output") ;; *) fail "output must be text or json, not '$output'" ;; esac
[ -n "${INPUT_FILE:-}" ] && args+=(--file "$INPUT_FILE")
[ -n "${INPUT_WAIT:-}" ] && args+=(--wait "$INPUT_WAIT")
case "${INPUT_IAM:-false}" in true) args+=(--iam) ;; false) ;; *) fail "iam must be true or false, not '$INPUT_IAM'" ;; esac
# Word splitting without globbing: targets and extra arguments hold no
# spaces of their own (URLs, flags).
set -f
# shellcheck disable=SC2206
args+=(${INPUT_ARGS:-} ${INPUT_TARGETS:-})
set +f
[ -n "${INPUT_TARGETS:-}${INPUT_FILE:-}${INPUT_ARGS:-}" ] || fail "no targets: set the targets or file input"

report="$dir/report.$output"
code=0
"$bin_dir/rdsconn" "${args[@]}" >"$report" || code=$?
cat "$report"
echo "exit-code=$code" >>"$GITHUB_OUTPUT"
echo "report=$report" >>"$GITHUB_OUTPUT"

escape() { sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g' "$1"; }
{
  if [ "$code" -eq 0 ]; then
    echo "### rdsconn check: every target passed"
  else
    echo "### rdsconn check: failed (exit $code)"
  fi
  echo
  echo "<pre>"
  escape "$report"
  echo "</pre>"
} >>"$GITHUB_STEP_SUMMARY"
exit "$code"
