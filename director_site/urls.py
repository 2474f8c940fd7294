"""Management listener URLs: the Django admin (the API and status pages are added by balancer.urls)."""
from django.contrib import admin
from django.urls import include, path

from balancer import login_throttle

login_throttle.install(admin.site)  # failed admin logins are throttled (before the urls are built)

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("balancer.urls")),
]
