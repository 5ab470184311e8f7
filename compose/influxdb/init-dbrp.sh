#!/bin/bash
# Runs once, after InfluxDB's first-start setup (docker-entrypoint-initdb.d):
# maps the v1 database LineGuard and Grafana use to the bucket, so the v1
# API (/write, /query with InfluxQL) works with the setup token.
set -euo pipefail
db="${LINEGUARD_INFLUX_DATABASE:-lineguard}"
bucket_id="$(influx bucket list --name "${DOCKER_INFLUXDB_INIT_BUCKET}" \
  --org "${DOCKER_INFLUXDB_INIT_ORG}" --hide-headers | cut -f 1)"
influx v1 dbrp create --org "${DOCKER_INFLUXDB_INIT_ORG}" \
  --db "${db}" --rp autogen --bucket-id "${bucket_id}" --default
echo "v1 database ${db} -> bucket ${DOCKER_INFLUXDB_INIT_BUCKET} (${bucket_id})"
