"""URLs of the test project: the admin, and the django-durable API once it exists."""

from django.contrib import admin
from django.urls import path

urlpatterns = [
    path("admin/", admin.site.urls),
    # path("durable/", include("django_durable.api.urls")),  # needs `include` from django.urls
]
