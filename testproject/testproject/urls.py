"""URLs of the test project: the admin and the django-durable API."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/django_durable/taskexecution/")),
    path("admin/", admin.site.urls),
    path("durable/", include("django_durable.api.urls")),
]
