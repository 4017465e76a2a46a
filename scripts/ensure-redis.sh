#!/usr/bin/env bash
# Make sure Redis answers at REDIS_URL. Starts a local redis-server when the URL
# points at this machine and nothing answers; installs it from the system
# packages when it is missing and we may (root or passwordless sudo).
set -euo pipefail
PY=${PY:-.venv/bin/python}
URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
DATA_DIR=${FUSIONROOM_DATA_DIR:-.data}

ping() { "$PY" - "$URL" <<'PY'
import sys, redis
try:
    redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1, socket_timeout=1).ping()
except Exception:
    sys.exit(1)
PY
}

if ping; then echo "redis: answering at $URL"; exit 0; fi

read -r HOST PORT < <("$PY" -c "import sys; from urllib.parse import urlsplit; u=urlsplit(sys.argv[1]); print(u.hostname or '127.0.0.1', u.port or 6379)" "$URL")
case "$HOST" in
  127.0.0.1|localhost|::1) ;;
  *) echo "redis: nothing answers at $URL, and it is not on this machine; start it there." >&2; exit 1 ;;
esac

if ! command -v redis-server >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
      echo "redis: redis-server is not installed. Install it, then run this again:" >&2
      echo "  Debian/Ubuntu: sudo apt-get install redis-server    macOS: brew install redis" >&2
      exit 1
    fi
  fi
  echo "redis: installing redis-server from the system packages…"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi

mkdir -p "$DATA_DIR"
echo "redis: starting redis-server on $HOST:$PORT (log: $DATA_DIR/redis.log)"
redis-server --daemonize yes --bind 127.0.0.1 --port "$PORT" --save "" --appendonly no \
  --dir "$DATA_DIR" --logfile "$(cd "$DATA_DIR" && pwd)/redis.log"
for _ in $(seq 1 50); do ping && { echo "redis: answering at $URL"; exit 0; }; sleep 0.2; done
echo "redis: started but does not answer; see $DATA_DIR/redis.log" >&2
exit 1
