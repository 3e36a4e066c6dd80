#!/usr/bin/env bash
# Run COMMAND unless STAMP is newer than DEPENDENCY, holding a lock (STAMP's path + .lock) so that
# two makes started together (`make serve` and `make test` on a fresh clone) install once, the
# second waiting for the first instead of breaking its install. COMMAND touches nothing: STAMP is
# touched here, after it succeeds.
#
# usage: scripts/run-once.sh STAMP DEPENDENCY COMMAND [ARG ...]
set -euo pipefail
stamp=${1:?usage: run-once.sh STAMP DEPENDENCY COMMAND [ARG ...]}
dependency=${2:?usage: run-once.sh STAMP DEPENDENCY COMMAND [ARG ...]}
shift 2
[ $# -gt 0 ] || { echo "run-once.sh: no command" >&2; exit 2; }
mkdir -p "$(dirname "$stamp")"
exec 9>"$stamp.lock"
flock 9
if [ -e "$stamp" ] && [ "$stamp" -nt "$dependency" ]; then
  exit 0  # done meanwhile, by whoever held the lock
fi
"$@"
touch "$stamp"
