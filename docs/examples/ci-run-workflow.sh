#!/bin/sh
# A CI job step: run a Bifrost workflow, show its log in the job's output, and fail the job unless it succeeds.
#
# Needs the `bifrost` command (`pip install bifrost-cli`) and, from the pipeline's secrets, BIFROST_URL and
# BIFROST_API_KEY. Usage:
#
#   ci-run-workflow.sh WORKFLOW [bifrost run options...]
#   ci-run-workflow.sh deploy_service -p service=billing -p "version=$CI_COMMIT_SHA"
#
# BIFROST_TIMEOUT (seconds, default 1800) bounds the wait; the execution itself goes on if it passes.
set -u

if [ $# -lt 1 ]; then
    echo "usage: $0 WORKFLOW [bifrost run options...]" >&2
    exit 2
fi
workflow=$1
shift

bifrost run "$workflow" "$@" --follow --timeout "${BIFROST_TIMEOUT:-1800}"
code=$?
case $code in
    0) exit 0 ;;
    1) what="the workflow failed" ;;
    2) what="the request was refused (check the workflow's name and parameters)" ;;
    3) what="the workflow completed with errors" ;;
    4) what="the workflow timed out" ;;
    5) what="the execution was cancelled" ;;
    6) what="Bifrost could not be reached" ;;
    7) what="the API key was refused" ;;
    8) what="it was still running after ${BIFROST_TIMEOUT:-1800} s" ;;
    *) what="bifrost exited with $code" ;;
esac
echo "Bifrost workflow $workflow: $what (exit $code)" >&2
exit "$code"
