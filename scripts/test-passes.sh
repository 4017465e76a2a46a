#!/usr/bin/env bash
# The suite's passes as `make test` runs them, in three steps to keep CI inside its
# 30 minutes on two cores:
#   1. the SQLite pass without the real-model tests, and at the same time the
#      PostgreSQL pass (when one answers): neither keeps a core busy alone, most of
#      their time is waiting on sockets and subprocesses. Each has a Redis database
#      and model-server ports of its own, so their stacks never meet.
#   2. the real-model tests (marker `models`), alone: real decoding wants both cores.
# The cluster tests follow in the Makefile. Exit status: non-zero if any pass failed;
# every pass runs to its end either way, and the PostgreSQL pass's log is printed
# whole once it ends.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
ARGS=${PYTEST_ARGS:---durations=10}  # the slowest ten of each pass, to see where CI time goes
logs=.data/test-logs
mkdir -p "$logs"

postgres_url=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
pg_pid=""
if "$PY" -c 'import socket; socket.create_connection(("127.0.0.1", 5432), 1)' 2>/dev/null; then
  echo "==> test suite on PostgreSQL, in the background (log: $logs/postgres.log)"
  # The browser, real-model and most live-stack tests run on SQLite only: they drive
  # the same pages and pipeline on either database. Those marked `database` run here.
  # shellcheck disable=SC2086
  DATABASE_URL=$postgres_url REDIS_URL=redis://127.0.0.1:6379/14 LOCAL_MODELS_PORT=18181 \
    "$PY" -m pytest -p no:cacheprovider \
    -m "not browser and not cluster and not models and (not stack or database)" $ARGS \
    >"$logs/postgres.log" 2>&1 &
  pg_pid=$!
else
  echo "==> no PostgreSQL at 127.0.0.1:5432: skipping the PostgreSQL pass"
fi
trap '[ -n "$pg_pid" ] && kill "$pg_pid" 2>/dev/null' EXIT

echo "==> test suite on SQLite, without the real-model tests"
# shellcheck disable=SC2086
env -u DATABASE_URL "$PY" -m pytest -m "not cluster and not models" $ARGS
sqlite=$?

postgres=0
if [ -n "$pg_pid" ]; then
  wait "$pg_pid"
  postgres=$?
  pg_pid=""
  echo "==> the PostgreSQL pass's output"
  cat "$logs/postgres.log"
fi

echo "==> the real-model tests, on SQLite"
# shellcheck disable=SC2086
env -u DATABASE_URL "$PY" -m pytest -m "models and not cluster" $ARGS
models=$?

echo "==> SQLite: exit $sqlite; PostgreSQL: exit $postgres; real models: exit $models"
[ "$sqlite" = 0 ] && [ "$postgres" = 0 ] && [ "$models" = 0 ]
