#!/usr/bin/env bash
# Regenerates the sample output of the main command in README.md: runs the bench on
# data/siftsmall and puts its report between the readme-sample markers, so the sample always
# has the columns and lines the bench prints today. Timings vary between runs and with the
# machine's load; the report's header records the load average at the start.
#
# Usage: scripts/readme_sample.sh   (from anywhere; builds the release binary if needed)
set -euo pipefail
cd "$(dirname "$0")/.."

start='<!-- readme-sample:start -->'
end='<!-- readme-sample:end -->'
for marker in "$start" "$end"; do
    if [ "$(grep -cxF -- "$marker" README.md)" != 1 ]; then
        echo "README.md must hold the line \`$marker\` exactly once" >&2
        exit 1
    fi
done

report=$(mktemp)
spliced=$(mktemp)
trap 'rm -f "$report" "$spliced"' EXIT
cargo run --release --quiet -p hnsw-batch-cli -- bench data/siftsmall --quiet >"$report"

awk -v start="$start" -v end="$end" -v report="$report" '
    $0 == start {
        print
        print "```text"
        while ((getline line < report) > 0) print line
        print "```"
        skip = 1
        next
    }
    $0 == end { skip = 0 }
    !skip { print }
' README.md >"$spliced"
cat "$spliced" >README.md
echo "README.md: sample updated from \`bench data/siftsmall\`" >&2
