#!/bin/sh
# Run the test suite on each Python version given (e.g. 3.12 3.13), all at once, each in its own
# virtualenv .venv-pyX.Y (created or refreshed when pyproject.toml changed). Fails if a version is
# missing or any suite fails; prints each suite's summary and the full log of a failing one.
# Tests marked `browser` (headless Chromium against the served dashboard) and `scale` (many processes or
# server replicas: our locking and SQL at scale) test the front end and the engine, not
# the interpreter: they run once, on the main Python (`make unit`).
set -u
cd "$(dirname "$0")/.."
status=0
for v in "$@"; do
    tools/find-python.sh "$v" >/dev/null || status=1
done
[ "$status" = 0 ] || exit 1
for v in "$@"; do
    (
        venv=".venv-py$v"
        if [ ! -f "$venv/.installed" ] || [ pyproject.toml -nt "$venv/.installed" ] || [ Makefile -nt "$venv/.installed" ]; then
            "$(tools/find-python.sh "$v")" -m venv "$venv" &&
                "$venv/bin/python" -m pip install --quiet --upgrade pip &&
                "$venv/bin/pip" install --quiet -e ".[${EXTRAS:-dev,openai,anthropic,google,server}]" &&
                touch "$venv/.installed"
        fi >"$venv.log" 2>&1 &&
            "$venv/bin/python" -m pytest -q -p no:cacheprovider -m "not browser and not scale" >>"$venv.log" 2>&1
        echo $? >"$venv.rc"
    ) &
done
wait
for v in "$@"; do
    venv=".venv-py$v"
    rc="$(cat "$venv.rc" 2>/dev/null || echo 1)"
    if [ "$rc" = 0 ]; then
        echo "Python $v: $(tail -n 1 "$venv.log")"
    else
        echo "Python $v: FAILED (exit $rc); log:" && cat "$venv.log"
        status=1
    fi
    rm -f "$venv.rc"
done
exit $status
