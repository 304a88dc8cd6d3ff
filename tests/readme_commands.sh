#!/usr/bin/env bash
# Runs the commands of the README's "First run" and "In scripts" sections as a
# newcomer would type them: from the repository root, after `make`, with no network.
# Every line of their ```sh blocks is one command (a line ending in \ continues on
# the next; lines starting with # are comments). Each runs under
# `bash -o pipefail -c`, stdin from /dev/null (a redirection or pipe in the command
# takes precedence), 60 s at most. Prints `ok CMD` or `FAIL (status N) CMD` per
# command; exits 0 only when every command passed and there were at least 3.
set -u
cd "$(dirname "$0")/.." || exit 1

README=README.md
SECTIONS=("First run" "In scripts")

# The commands of one section (## heading), one per line, continuations joined.
commands_of() {
    awk -v want="$1" '
        /^## / { sect = substr($0, 4); inblock = 0; next }
        sect != want { next }
        /^```sh[ \t]*$/ { inblock = 1; next }
        /^```/ { inblock = 0; next }
        !inblock { next }
        {
            line = $0
            if (cont != "") { line = cont " " line; cont = "" }
            if (line ~ /\\$/) { cont = substr(line, 1, length(line) - 1); next }
            if (line ~ /^[ \t]*$/ || line ~ /^[ \t]*#/) next
            print line
        }
        END { if (cont != "") print cont }
    ' "$README"
}

found=0
failed=0
for section in "${SECTIONS[@]}"; do
    if ! grep -qx "## $section" "$README"; then
        echo "readme_commands.sh: no section '## $section' in $README" >&2
        failed=$((failed + 1))
        continue
    fi
    while IFS= read -r cmd; do
        found=$((found + 1))
        timeout 60 bash -o pipefail -c "$cmd" < /dev/null > /dev/null 2>&1
        status=$?
        if [ "$status" -eq 0 ]; then
            echo "ok $cmd"
        else
            echo "FAIL (status $status) $cmd"
            failed=$((failed + 1))
        fi
    done < <(commands_of "$section")
done

if [ "$found" -lt 3 ]; then
    echo "readme_commands.sh: found $found commands in $README, expected at least 3" >&2
    exit 1
fi
[ "$failed" -eq 0 ]
