#!/usr/bin/env bash
# Formats the template's Rust files with rustfmt. The template holds Liquid placeholders
# ({{crate_name}}), so rustfmt cannot read it in place: generate it, format the copy, and
# bring the formatted files back with the placeholders restored.
# Usage: scripts/fmt-template.sh [--check]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/lib.sh"
need_cargo_generate
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && cargo generate --path "$root" template --name fmt-probe --silent --vcs none >/dev/null)
project="$work/fmt-probe"
(cd "$project" && cargo fmt)
status=0
while IFS= read -r -d '' file; do
  rel=${file#"$project/"}
  restore=(sed -e 's/fmt_probe/{{crate_name}}/g' -e 's/fmt-probe/{{project-name}}/g' "$file")
  # Compared as files, not through $(...), which would drop trailing blank lines.
  if ! cmp -s <("${restore[@]}") "$root/template/$rel"; then
    if [ "${1:-}" = "--check" ]; then
      echo "not rustfmt-clean: template/$rel"
      status=1
    else
      "${restore[@]}" > "$root/template/$rel"
      echo "formatted template/$rel"
    fi
  fi
done < <(find "$project" -name '*.rs' -not -path '*/target/*' -print0)
exit $status
