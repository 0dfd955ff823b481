from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("ping/", views.ping),
    path("login/<int:uid>/", views.login),
    path("whoami/", views.whoami),
    path("awhoami/", views.awhoami),
    path("cycle/", views.cycle),
    path("item/<int:pk>/", views.item),
    path("aitem/<int:pk>/", views.aitem),
    path("item/<int:pk>/rename/", views.rename),
    path("page/<str:backend>/<int:n>/", views.page),
    path("apage/<str:backend>/<int:n>/", views.apage),
]
