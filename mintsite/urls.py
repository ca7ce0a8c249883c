from django.contrib import admin
from django.urls import include, path

from mintsite.gateway import ipfs_gateway
from mintsite.observability.health import healthz, readyz
from mintsite.observability.metrics import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("mintsite.api.urls")),
    path("ipfs/<str:cid>", ipfs_gateway, name="ipfs-gateway"),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("", include("mintsite.pages.urls")),
]
