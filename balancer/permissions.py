"""Who may use the management API (SPEC §9).

Two roles:

- operators: superusers, members of group ``director-operators``, and users whose admin
  permissions let them change directors and backends: read and write;
- viewers: members of group ``director-viewers`` and users with the admin permission to
  view directors: read only.

The groups are created on demand (`grant_role`, `createapitoken`). A staff flag alone grants
nothing: API rights follow the same model permissions as the admin. Browser sessions additionally need ``is_staff`` (SPEC:
"a staff admin session"); API tokens do not. Anonymous requests get 401, authenticated
users without the needed role 403.
"""
from __future__ import annotations

from django.contrib.auth.models import Group
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import SAFE_METHODS, BasePermission

OPERATORS_GROUP = "director-operators"
VIEWERS_GROUP = "director-viewers"
ROLE_GROUPS = {"operator": OPERATORS_GROUP, "viewer": VIEWERS_GROUP}


def _group_names(user) -> set[str]:
    cached = getattr(user, "_director_groups", None)
    if cached is None:
        cached = set(user.groups.values_list("name", flat=True))
        user._director_groups = cached
    return cached


OPERATOR_PERMISSIONS = ("balancer.change_director", "balancer.change_backend")
VIEWER_PERMISSION = "balancer.view_director"


def _active(user) -> bool:
    return bool(user and user.is_authenticated and user.is_active)


def is_operator(user) -> bool:
    """May read and change directors and backends."""
    if not _active(user):
        return False
    return user.is_superuser or OPERATORS_GROUP in _group_names(user) or user.has_perms(OPERATOR_PERMISSIONS)


def is_viewer(user) -> bool:
    """May read directors, backends and the audit log."""
    if not _active(user):
        return False
    return VIEWERS_GROUP in _group_names(user) or is_operator(user) or user.has_perm(VIEWER_PERMISSION)


def grant_role(user, role: str) -> None:
    """Make `user` an operator or a viewer (exactly one of the two roles)."""
    wanted = ROLE_GROUPS[role]
    for name in ROLE_GROUPS.values():
        group, _ = Group.objects.get_or_create(name=name)
        if name == wanted:
            user.groups.add(group)
        else:
            user.groups.remove(group)
    user.__dict__.pop("_director_groups", None)


class DirectorRole(BasePermission):
    """Viewers read, operators write; sessions must belong to staff."""

    message = "You do not have a director role that allows this request."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False  # DRF turns this into 401 with WWW-Authenticate
        if isinstance(request.successful_authenticator, SessionAuthentication) and not user.is_staff:
            self.message = "Browser sessions need a staff account."
            return False
        if request.method in SAFE_METHODS:
            return is_viewer(user)
        return is_operator(user)
