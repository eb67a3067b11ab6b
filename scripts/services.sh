#!/usr/bin/env bash
# Make sure the services the test suite uses answer: PostgreSQL on 5432, MariaDB on 3306, and
# Redis on 6379 (shared rate limits); and that Debian's Chromium is installed (the browser tests).
# Starts a stopped one with the machine's own service commands and waits for it (max 60 s each).
set -euo pipefail

answers() { timeout 2 bash -c "</dev/tcp/127.0.0.1/$1" 2>/dev/null; }

wait_for() {
  local name=$1 port=$2
  for _ in $(seq 1 120); do
    if answers "$port"; then echo "services: $name answers on $port"; return 0; fi
    sleep 0.5
  done
  echo "services: $name did not come up on port $port" >&2
  return 1
}

if ! answers 5432; then
  echo "services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
wait_for PostgreSQL 5432

if ! answers 3306; then
  echo "services: starting MariaDB"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
fi
wait_for MariaDB 3306

if ! answers 6379; then
  echo "services: starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
fi
wait_for Redis 6379

# Debian's Chromium, which the browser tests (tests/browser) drive through Playwright: Playwright's
# own browser download is not reachable from CI, so its package is installed here once.
if [ ! -x /usr/bin/chromium ]; then
  echo "services: installing Chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
fi
echo "services: $(/usr/bin/chromium --version 2>/dev/null || echo 'Chromium missing')"
