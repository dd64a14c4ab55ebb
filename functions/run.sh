#!/bin/sh
# The handler in streaming mode (template ResponseStreaming=true): the AWS Lambda Web Adapter's
# /opt/bootstrap runs this, waits for the readiness path, then relays each invocation to the
# same app on $PORT (chat_api/serve.py: uvicorn). The artifact ships its bytecode and Lambda's
# /var/task is read-only, so Python is told not to try writing any.
cd "${LAMBDA_TASK_ROOT:?}" || exit 1
export PYTHONDONTWRITEBYTECODE=1
export PYTHONPATH="$LAMBDA_TASK_ROOT${PYTHONPATH:+:$PYTHONPATH}"
export LAMBDA_WEB_ADAPTER=true
exec python3 -m chat_api.serve
