#!/usr/bin/env bash
# The whole test suite: lint, types, unit tests and doctests (no broker), then the
# integration tests, which start their own embedded broker.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
echo "==> ruff"
ruff check streamrec tests scripts
ruff format --check streamrec tests scripts
echo "==> mypy"
mypy
# The page's browser test needs Debian's chromium and chromedriver: installed here when
# running as root; otherwise that one test skips, saying so.
if ! command -v chromedriver >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "==> installing chromium and chromium-driver (the page's browser test)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    chromium chromium-driver >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install \
         -y -q --no-install-recommends chromium chromium-driver >/dev/null 2>&1; } \
    || echo "    could not install them; the browser test will skip"
fi
echo "==> pytest"
exec python -m pytest -q -p no:cacheprovider --doctest-modules streamrec tests "$@"
