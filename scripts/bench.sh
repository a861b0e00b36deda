#!/usr/bin/env bash
# Throughput / freshness benchmark on its own embedded broker; prints JSON.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
exec streamrec bench --json "$@"
