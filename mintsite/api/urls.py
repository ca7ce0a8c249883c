from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from mintsite.api import allowlists, views
from mintsite.api.errors import not_found

TOKEN = "collections/<slug:slug>/tokens/<int:token_id>/"
WEBHOOK = "collections/<slug:slug>/webhooks/<int:pk>/"
ALLOWLIST = "collections/<slug:slug>/allowlists/<str:allowlist>/"

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    path("collections/", views.CollectionList.as_view(), name="api-collections"),
    path("collections/<slug:slug>/", views.CollectionDetail.as_view(), name="api-collection"),
    path(
        "collections/<slug:slug>/rarity/",
        views.CollectionRarity.as_view(),
        name="api-collection-rarity",
    ),
    path("tokens/", views.TokenList.as_view(), name="api-tokens"),
    path("tokens/<int:token_id>/", views.TokenDetail.as_view(), name="token-detail"),
    path(
        "collections/<slug:slug>/tokens/",
        views.CollectionTokenList.as_view(),
        name="api-collection-tokens",
    ),
    path(TOKEN, views.CollectionTokenDetail.as_view(), name="collection-token-detail"),
    path(TOKEN + "events/", views.TokenEvents.as_view(), name="api-token-events"),
    path(TOKEN + "provenance/", views.TokenProvenance.as_view(), name="api-token-provenance"),
    path(TOKEN + "stream/", views.TokenStream.as_view(), name="api-token-stream"),
    path(TOKEN + "requeue/", views.TokenRequeue.as_view(), name="api-token-requeue"),
    path("collections/<slug:slug>/webhooks/", views.WebhookList.as_view(), name="api-webhooks"),
    path(WEBHOOK, views.WebhookDetail.as_view(), name="api-webhook"),
    path(WEBHOOK + "deliveries/", views.WebhookDeliveries.as_view(), name="api-webhook-deliveries"),
    path(
        "collections/<slug:slug>/allowlists/",
        allowlists.AllowlistList.as_view(),
        name="api-allowlists",
    ),
    path(ALLOWLIST, allowlists.AllowlistDetail.as_view(), name="api-allowlist"),
    path(
        ALLOWLIST + "proofs/<str:address>/",
        allowlists.AllowlistProof.as_view(),
        name="api-allowlist-proof",
    ),
    # Anything else under /api/ answers a JSON 404 (not the site's HTML page).
    re_path(r"^", not_found),
]
