"""Management listener URLs: the Django admin (the API and status pages are added by balancer.urls)."""
from django.contrib import admin
from django.urls import path

urlpatterns = [
    path("admin/", admin.site.urls),
]
