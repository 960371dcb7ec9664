#!/bin/sh
# Stand-in for your deploy tool, which examples/command.yaml runs:
# rollback.sh SERVICE BASELINE rolls SERVICE back to version BASELINE.
set -eu
echo "replace examples/rollback.sh with your deploy tool: roll $1 back to $2" >&2
exit 1
