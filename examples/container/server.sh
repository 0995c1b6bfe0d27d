#!/bin/sh
# The example's server: busybox httpd on $PORT (Knative's contract), its CGI script printing the
# variables tidal sets. As PID 1 a process gets no default SIGTERM handling, so stop it here.
export ARGS="$*" START_DIR="$(pwd)"
httpd -f -p "${PORT:-8080}" -h /www &
pid=$!
trap 'kill -TERM "$pid"; wait "$pid"; exit 0' TERM INT
echo "listening on $PORT as user $(id -u) in $(pwd)"
wait "$pid"
