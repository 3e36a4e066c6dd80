#!/usr/bin/env bash
# The comparison: bench/peers/compare.py with the same arguments (see its --help).
exec python3 "$(dirname "$0")/compare.py" "$@"
