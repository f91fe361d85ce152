#!/bin/sh
# Print the path of a working Python interpreter of version $1 (e.g. 3.12), or fail loudly.
# Looks on PATH first (python3.12), then in pyenv's versions, then in /usr/bin (Debian's python3.12).
set -u
want="$1"
for candidate in "$(command -v "python$want" 2>/dev/null)" \
    $(ls -1d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$want".*/bin/python"$want" 2>/dev/null | sort -V -r) \
    "/usr/bin/python$want" "/usr/local/bin/python$want"; do
    [ -n "$candidate" ] && [ -x "$candidate" ] || continue
    # a pyenv shim exists even when that version is not selected: run it to be sure
    got="$("$candidate" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" || continue
    if [ "$got" = "$want" ]; then
        echo "$candidate"
        exit 0
    fi
done
echo "error: Python $want not found (tried python$want on PATH, pyenv versions, /usr/bin);" \
    "llmledger claims $want, so its suite must run on it: install it (pyenv install $want, apt-get install python$want)" >&2
exit 1
