#!/bin/sh
# One-shot (admin-tools image): create Temporal's databases and bring both schemas to the
# server's version. Idempotent: `create` on an existing database and `update-schema` at the
# current version change nothing.
set -eu
tool() { temporal-sql-tool --plugin postgres12 --ep postgresql -u "$POSTGRES_USER" -p 5432 "$@"; }
for db in temporal temporal_visibility; do
  tool --db "$db" create || true   # exists already on a restart (the next steps then check it)
done
tool --db temporal setup-schema -v 0.0 || true
tool --db temporal update-schema -d /etc/temporal/schema/postgresql/v12/temporal/versioned
tool --db temporal_visibility setup-schema -v 0.0 || true
tool --db temporal_visibility update-schema -d /etc/temporal/schema/postgresql/v12/visibility/versioned
echo "schema ready"
