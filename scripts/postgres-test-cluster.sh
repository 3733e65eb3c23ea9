#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster for the tests: an unprivileged user,
# a temporary directory, loopback only, a free port. Prints the URL to give
# the tests as TOLLGATE_TEST_POSTGRES; stop it with `pg_ctl -D DIR stop`
# (DIR is printed on stderr).
#   export TOLLGATE_TEST_POSTGRES=$(scripts/postgres-test-cluster.sh)
set -euo pipefail
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
[ -n "$bin" ] || { echo "PostgreSQL is not installed (Debian package postgresql)" >&2; exit 1; }
dir=$(mktemp -d /tmp/tollgate-pg.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_user=()
if [ "$(id -u)" = 0 ]; then
  # initdb refuses to run as root: the cluster belongs to `postgres`.
  id postgres >/dev/null 2>&1 || useradd --system --home-dir "$dir" postgres
  chown postgres "$dir"
  as_user=(runuser -u postgres --)
fi
"${as_user[@]}" "$bin/initdb" -D "$dir/data" -U tollgate --auth=trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1
"${as_user[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
  -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c max_connections=200" start >/dev/null
"$bin/createdb" -h 127.0.0.1 -p "$port" -U tollgate tollgate_test
echo "postgres cluster in $dir (stop: ${as_user[*]} $bin/pg_ctl -D $dir/data stop)" >&2
echo "postgres://tollgate@127.0.0.1:$port/tollgate_test"
