from django.contrib import admin
from django.urls import path

from mintsite.api import TokenDetail
from mintsite.gateway import ipfs_gateway

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/tokens/<int:token_id>/", TokenDetail.as_view(), name="token-detail"),
    path(
        "api/collections/<slug:slug>/tokens/<int:token_id>/",
        TokenDetail.as_view(),
        name="collection-token-detail",
    ),
    path("ipfs/<str:cid>", ipfs_gateway, name="ipfs-gateway"),
]
