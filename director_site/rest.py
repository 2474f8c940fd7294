"""Django REST framework and drf-spectacular settings for the management API (SPEC §9).

Imported at the end of settings.py. Deny by default: every view needs an authenticated
user with a director role (balancer.permissions) unless it says otherwise.
"""

REST_FRAMEWORK = {
    # Token first: its WWW-Authenticate header makes DRF answer 401, not 403, without credentials.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["balancer.permissions.DirectorRole"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["balancer.api_json.GuardedJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "balancer.api_errors.exception_handler",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Director API",
    "DESCRIPTION": "Directors, backends, routes and the audit log of the Director load balancer.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and Swagger UI need a viewer, like the rest of the API.
    "SERVE_PERMISSIONS": ["balancer.permissions.DirectorRole"],
    # Separate request/response components: read-only fields never appear in request bodies.
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # One stable component name per choice set, wherever it is used.
    "ENUM_NAME_OVERRIDES": {
        "SchedulerEnum": "balancer.choices.Scheduler",
        "OnClientAbortEnum": "balancer.choices.ClientAbort",
        "RoleEnum": "balancer.choices.Role",
        "ProtocolEnum": "balancer.choices.Protocol",
        "HealthCheckModeEnum": "balancer.choices.HealthCheckMode",
        "HealthStateEnum": "balancer.choices.HealthState",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "balancer.api_errors.forbid_unknown_request_fields",
        "balancer.openapi_hooks.document_unsupported_media_type",
        "balancer.openapi_hooks.require_create_bodies",
        "balancer.openapi_hooks.add_links",
    ],
}
