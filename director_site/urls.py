"""Management listener URLs: the Django admin (the API and status pages are added by balancer.urls);
`/` leads to the status page (which sends a visitor without a staff session to the login)."""
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from balancer import login_throttle

login_throttle.install(admin.site)  # failed admin logins are throttled (before the urls are built)

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="status"), name="home"),
    path("admin/", admin.site.urls),
    path("", include("balancer.urls")),
]
