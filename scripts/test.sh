#!/usr/bin/env bash
# The whole test suite: lint, types, unit tests and doctests (no broker), then the
# integration tests, which start their own embedded broker.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
echo "==> ruff"
ruff check streamrec tests
ruff format --check streamrec tests
echo "==> mypy"
mypy
echo "==> pytest"
exec python -m pytest -q -p no:cacheprovider --doctest-modules streamrec tests "$@"
