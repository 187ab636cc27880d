#!/usr/bin/env bash
# Release packaging, run by .github/workflows/release.yml and tested by
# scripts/test.sh. BINARY is a built rdsconn for the machine running this
# (completions and man pages come from running it).
#
#   scripts/dist.sh assets BINARY            dist/share/{man,completions}
#   scripts/dist.sh archive TARGET BINARY    dist/rdsconn-VERSION-TARGET.tar.gz
#   scripts/dist.sh deb                      dist/rdsconn_VERSION-1_ARCH.deb
#                                            (cargo-deb, from target/release,
#                                            or target/$DEB_TARGET/release)
#   scripts/dist.sh notes VERSION [FILE]     the CHANGELOG.md section of VERSION
#                                            (the GitHub release's notes)
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
[ -n "$version" ] || { echo "dist.sh: no version in Cargo.toml" >&2; exit 1; }

assets() {
  local bin=$1 share=dist/share
  rm -rf "$share"
  mkdir -p "$share/man" "$share/completions"
  "$bin" man --out-dir "$share/man"
  "$bin" completions bash >"$share/completions/rdsconn.bash"
  "$bin" completions zsh >"$share/completions/_rdsconn"
  "$bin" completions fish >"$share/completions/rdsconn.fish"
}

archive() {
  local target=$1 bin=$2
  local name="rdsconn-$version-$target"
  local stage
  stage=$(mktemp -d)
  trap 'rm -rf "$stage"' RETURN
  assets "$bin"
  mkdir -p "$stage/$name/complete" "$stage/$name/doc"
  install -m 0755 "$bin" "$stage/$name/rdsconn"
  cp README.md CHANGELOG.md LICENSE LICENSE-MIT LICENSE-APACHE "$stage/$name/"
  cp dist/share/completions/* "$stage/$name/complete/"
  cp -r dist/share/man "$stage/$name/doc/man"
  # Reproducible: sorted names, fixed owner and times.
  local epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
  tar -C "$stage" --sort=name --owner=0 --group=0 --numeric-owner \
    --mtime="@$epoch" -cf - "$name" | gzip -n -9 >"dist/$name.tar.gz"
  echo "dist/$name.tar.gz"
}

# The lines under "## VERSION" (also "## [VERSION]", "## vVERSION", with
# anything after it such as a date) up to the next "## " heading.
notes() {
  local want=$1 file=${2:-CHANGELOG.md}
  awk -v v="$want" '
    /^## / {
      if (found) exit
      h = $2; gsub(/^\[|\]$/, "", h); sub(/^v/, "", h)
      if (h == v) { found = 1; next }
    }
    found { print }
    END { if (!found) exit 1 }
  ' "$file" || { echo "dist.sh: $file has no section for $want" >&2; return 1; }
}

case "${1:-}" in
  assets) [ $# -eq 2 ] || { echo "usage: dist.sh assets BINARY" >&2; exit 2; }; assets "$2" ;;
  archive) [ $# -eq 3 ] || { echo "usage: dist.sh archive TARGET BINARY" >&2; exit 2; }; archive "$2" "$3" ;;
  deb)
    target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    assets "$target_dir/${DEB_TARGET:+$DEB_TARGET/}release/rdsconn"
    cargo deb --no-build --locked --output dist/ ${DEB_TARGET:+--target "$DEB_TARGET"}
    ;;
  notes) [ $# -ge 2 ] || { echo "usage: dist.sh notes VERSION [FILE]" >&2; exit 2; }; notes "$2" "${3:-CHANGELOG.md}" ;;
  *) echo "usage: dist.sh assets BINARY | archive TARGET BINARY | deb | notes VERSION [FILE]" >&2; exit 2 ;;
esac
