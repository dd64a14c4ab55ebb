"""Streaming mode's server: uvicorn serving the app on $PORT, as run.sh starts it.

The AWS Lambda Web Adapter runs run.sh, polls the readiness path until uvicorn answers, then
relays each invocation to it (`chat_api.web_adapter` reads its headers).
"""

from __future__ import annotations

import gc

# As in `chat_api.handler`: the objects init makes trigger cyclic GC passes that find nothing
# to free, so the collector stays off until the app is built, which is then frozen out of
# later passes (bench/README.md: 14 to 18% of run.sh's CPU time to its first answer).
gc.disable()

import os  # noqa: E402 (imported with the collector off, as everything below)

# openai first, from the top level, for the reason `chat_api.handler` gives (CPython 3.13.0's
# frame-stack chunks): beneath chat_api.main, 2,200 16 KiB chunks were mapped and unmapped.
import openai  # noqa: E402, F401
import uvicorn  # noqa: E402

from chat_api.main import create_app  # noqa: E402

app = create_app()
gc.freeze()
gc.enable()

# The adapter drops a connection it has not used for 4 s (aws-lambda-web-adapter src/lib.rs,
# `Adapter::new`: `pool_idle_timeout`). Holding it longer, uvicorn never closes a connection
# the adapter is about to send on.
KEEP_ALIVE_SECONDS = 5


def config() -> uvicorn.Config:
    """uvicorn's settings: the app on 127.0.0.1:$PORT, where the adapter sends requests."""
    return uvicorn.Config(
        app,
        host="127.0.0.1",
        port=int(os.environ.get("PORT", "8080")),
        # What the artifact ships (neither uvloop nor httptools), named: no import is tried.
        loop="asyncio",
        http="h11",
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        # The app writes one JSON record per request; uvicorn's lines would repeat it.
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    uvicorn.Server(config()).run()
