"""drf-spectacular postprocessing hooks that complete the served OpenAPI document (SPEC §9):
415 on every operation that takes a body, a required body on every create, and links from each create to what can be done with
the object it made (so a client, or schemathesis' stateful tests, can chain create -> read ->
update -> delete)."""
from __future__ import annotations

API = "/api/v1/"
DIRECTOR = API + "directors/{director}/"
BACKEND = DIRECTOR + "backends/{backend}/"
ROUTE = API + "routes/{route}/"
UNSUPPORTED_MEDIA_TYPE = "The body is not `application/json`"

# (path, method) of a create, its status -> {link name: ((path, method) of the target, parameters)}
LINKS = {
    (API + "directors/", "post", "201"): {
        "GetDirector": ((DIRECTOR, "get"), {"director": "$response.body#/name"}),
        "UpdateDirector": ((DIRECTOR, "patch"), {"director": "$response.body#/name"}),
        "DeleteDirector": ((DIRECTOR, "delete"), {"director": "$response.body#/name"}),
        "CreateBackend": ((DIRECTOR + "backends/", "post"), {"director": "$response.body#/name"}),
    },
    (DIRECTOR + "backends/", "post", "201"): {
        name: ((path, method), {"director": "$request.path.director", "backend": "$response.body#/name"})
        for name, path, method in (("GetBackend", BACKEND, "get"), ("UpdateBackend", BACKEND, "patch"),
                                   ("DisableBackend", BACKEND + "disable", "post"),
                                   ("DeleteBackend", BACKEND, "delete"))
    },
    (API + "routes/", "post", "201"): {
        name: ((ROUTE, method), {"route": "$response.body#/id"})
        for name, method in (("GetRoute", "get"), ("UpdateRoute", "patch"), ("DeleteRoute", "delete"))
    },
}


def document_unsupported_media_type(result, generator, request, public):
    """Every operation with a request body answers 415 to another content type."""
    for item in result.get("paths", {}).values():
        for operation in item.values():
            if "requestBody" in operation:
                operation["responses"].setdefault(
                    "415", {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                            "description": UNSUPPORTED_MEDIA_TYPE})
    return result


def require_create_bodies(result, generator, request, public):
    """A create without a body is refused (400 naming what is missing): the body is required."""
    for item in result.get("paths", {}).values():
        body = item.get("post", {}).get("requestBody")
        if body is not None:
            body["required"] = True
    return result


def add_links(result, generator, request, public):
    """OpenAPI links from each create's response to the operations on the created object."""
    paths = result.get("paths", {})
    for (path, method, status), links in LINKS.items():
        response = paths.get(path, {}).get(method, {}).get("responses", {}).get(status)
        if response is None:
            continue
        response["links"] = {
            name: {"operationId": paths[target][target_method]["operationId"], "parameters": parameters}
            for name, ((target, target_method), parameters) in links.items()
            if target_method in paths.get(target, {})
        }
    return result
