"""A process with error reports on, run by tests/test_error_reports.py: ``SENTRY_DSN`` in its
environment, as any web or worker process of the project would have it.

It makes one request fail (its database was never migrated) with an API key and a session
cookie, then has a real Dramatiq worker run a task that fails holding the wallet keys in its
local variables and naming them in its error, and waits for both reports to be sent.
"""

from __future__ import annotations

import io
import os
import sys
import time

import django


class SigningFailed(RuntimeError):
    pass


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mintsite.settings")
    django.setup()

    import dramatiq
    import sentry_sdk
    from django.conf import settings

    from mintsite.observability.metrics import broker_redis, queue_depths

    assert sentry_sdk.is_initialized(), "SENTRY_DSN is set: the settings start error reports"
    api_key, session = os.environ["PROBE_API_KEY"], os.environ["PROBE_SESSION"]

    # a page whose database query fails (the database was never migrated), through the WSGI
    # application gunicorn serves
    from mintsite.wsgi import application

    host = settings.ALLOWED_HOSTS[0]
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/c/aurora/",
        "QUERY_STRING": "",
        "SERVER_NAME": host,
        "SERVER_PORT": "443",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": os.environ["PROBE_CLIENT_ADDRESS"],
        "HTTP_HOST": host,
        "HTTP_AUTHORIZATION": f"Bearer {api_key}",
        "HTTP_COOKIE": f"sessionid={session}",
        "wsgi.url_scheme": "https",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    statuses: list[str] = []
    b"".join(application(environ, lambda status, headers, exc_info=None: statuses.append(status)))
    assert statuses[0].startswith("500"), statuses

    queue = "error-reports-probe"

    @dramatiq.actor(queue_name=queue, max_retries=0)
    def publish_batch(batch: int) -> None:
        signer = settings.PUBLISHER_KEY
        headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
        node = settings.RPC_URL
        raise SigningFailed(
            f"batch {batch}: {node} refused the transaction signed with {signer} "
            f"(deployer {settings.DEPLOYER_KEY}); sent with {headers}"
        )

    broker = dramatiq.get_broker()
    client_redis, namespace = broker_redis(5.0)
    publish_batch.send(7)
    worker = dramatiq.Worker(broker, queues={queue}, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while queue_depths(client_redis, namespace, [queue])[queue]["dead"] < 1:
            assert time.monotonic() < deadline, "the task was not dead-lettered in time"
            time.sleep(0.1)
    finally:
        worker.stop()
        client_redis.delete(*(f"{namespace}:{queue}{suffix}" for suffix in ("", ".msgs", ".XQ")))
    sentry_sdk.flush(timeout=10)


if __name__ == "__main__":
    main()
