"""WSGI entry point (gunicorn mintsite.wsgi in production)."""

import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mintsite.settings")
application = get_wsgi_application()
# Import every view now (about 1 s), not on a worker's first request: with gunicorn's
# preload_app the forked workers start warm, and a recycled worker does not stall the requests
# queued behind its first one (seen as multi-second p99s in `make bench-load`).
_views = get_resolver().url_patterns
