"""The collector's pages (issue 7): the mint page, the gallery and the token pages."""

from django.urls import path

from mintsite.pages import views

app_name = "pages"

urlpatterns = [
    path("", views.home, name="home"),
    path("c/<slug:slug>/", views.mint_page, name="mint"),
    path("c/<slug:slug>/gallery/", views.gallery, name="gallery"),
    path("c/<slug:slug>/tokens/<int:token_id>/", views.token_page, name="token"),
]
