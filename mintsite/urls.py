from django.contrib import admin
from django.urls import include, path

from mintsite.gateway import ipfs_gateway

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("mintsite.api.urls")),
    path("ipfs/<str:cid>", ipfs_gateway, name="ipfs-gateway"),
    path("", include("mintsite.pages.urls")),
]
