#!/usr/bin/env bash
# The main job on the embedded broker: broker, topics, worker, MovieLens-100k replay,
# a readable summary; every process is stopped at the end, also on Ctrl-C.
# Extra arguments go to `streamrec demo` (e.g. --limit 20000, --workers 2).
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
exec streamrec demo "$@"
