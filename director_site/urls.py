"""Management listener URLs: the Django admin (the API and status pages are added by balancer.urls)."""
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("balancer.urls")),
]
