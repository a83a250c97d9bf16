"""A tiny ASGI app for `test_workers`: answers with its worker's PID and worker count.

It imports nothing of the package, so a worker running it starts in a second.
"""

from __future__ import annotations

import os


def create_app():  # noqa: ANN201 - uvicorn's app factory
    async def app(scope, receive, send):  # noqa: ANN001, ANN202, ARG001
        if scope["type"] != "http":
            return
        body = f"{os.getpid()} {os.environ.get('WEB_CONCURRENCY')}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return app
