"""`/api/v1/schema/` (OpenAPI 3 of every SPEC §9 operation) and `/api/v1/docs/` (Swagger UI, no CDN)."""
from __future__ import annotations

import io
import re

from django.contrib.staticfiles import finders
from django.core.management import call_command

from tests.support.api import ApiTestBase

DIRECTOR = "/api/v1/directors/{director}/"
BACKEND = DIRECTOR + "backends/{backend}/"
OPERATIONS = {
    ("/api/v1/directors/", "get"): {"200"},
    ("/api/v1/directors/", "post"): {"201", "400", "409", "415"},
    (DIRECTOR, "get"): {"200", "404"},
    (DIRECTOR, "patch"): {"200", "400", "404", "415"},
    (DIRECTOR, "delete"): {"204", "404"},
    (DIRECTOR + "backends/", "get"): {"200", "404"},
    (DIRECTOR + "backends/", "post"): {"201", "400", "404", "409", "415"},
    (BACKEND, "get"): {"200", "404"},
    (BACKEND, "patch"): {"200", "400", "404", "415"},
    (BACKEND, "delete"): {"202", "404"},
    (BACKEND + "enable", "post"): {"200", "404"},
    (BACKEND + "disable", "post"): {"200", "404"},
    (DIRECTOR + "buckets/", "get"): {"200", "404"},
    (DIRECTOR + "buckets/", "post"): {"201", "400", "404", "409", "415"},
    (DIRECTOR + "buckets/{bucket}/", "get"): {"200", "404"},
    (DIRECTOR + "buckets/{bucket}/", "patch"): {"200", "400", "404", "415"},
    (DIRECTOR + "buckets/{bucket}/", "delete"): {"204", "404", "409"},
    ("/api/v1/audit/", "get"): {"200", "400"},
    ("/api/v1/routes/", "get"): {"200"},
    ("/api/v1/routes/", "post"): {"201", "400", "415"},
    ("/api/v1/routes/{route}/", "get"): {"200", "404"},
    ("/api/v1/routes/{route}/", "patch"): {"200", "400", "404", "415"},
    ("/api/v1/routes/{route}/", "delete"): {"204", "404"},
}


class TestSchema(ApiTestBase):
    def test_schema_documents_every_operation_and_its_statuses(self):
        schema = self.call("GET", "/api/v1/schema/?format=json", expect=200, client=self.viewer).json()
        assert schema["openapi"].startswith("3.")
        operations = {(path, method): set(op["responses"])
                      for path, item in schema["paths"].items() for method, op in item.items()}
        assert set(operations) == set(OPERATIONS)
        for key, statuses in OPERATIONS.items():
            assert operations[key] == statuses | {"401", "403"}, key
        assert {"tokenAuth", "cookieAuth"} <= set(schema["components"]["securitySchemes"])

    def test_schema_is_valid_openapi_and_generates_without_warnings(self):
        out = io.StringIO()
        call_command("spectacular", "--validate", "--fail-on-warn", "--format", "openapi-json", stdout=out)
        assert '"/api/v1/directors/"' in out.getvalue()

    def test_request_bodies_refuse_unknown_fields_and_fixed_ones(self):
        components = self.call("GET", "/api/v1/schema/?format=json", expect=200).json()["components"]["schemas"]
        for name in ("DirectorCreateRequest", "PatchedDirectorUpdateRequest", "BackendCreateRequest",
                     "PatchedBackendUpdateRequest", "RouteWriteRequest", "PatchedRouteWriteRequest"):
            assert components[name]["additionalProperties"] is False, name
        assert {"name", "url"}.isdisjoint(components["PatchedBackendUpdateRequest"]["properties"])
        assert components["BackendCreateRequest"]["required"] == ["name", "url"]
        assert components["BackendCreateRequest"]["properties"]["name"]["pattern"] == "^[A-Za-z0-9_.-]{1,64}$"
        assert {"id", "mutable"}.isdisjoint(components["RouteWriteRequest"]["properties"])

    def test_the_bounds_the_server_enforces_are_in_the_schema(self):
        components = self.call("GET", "/api/v1/schema/", expect=200).json()["components"]["schemas"]
        director = components["PatchedDirectorUpdateRequest"]["properties"]
        assert (director["retry_after"]["minimum"], director["retry_after"]["maximum"]) == (0, 86400)
        assert director["connect_timeout"]["minimum"] == 0.001
        assert director["health_check_host_header"]["maxLength"] == 255
        assert director["health_check_host_header"]["minLength"] == 1
        assert director["health_check_request_path"]["pattern"].startswith("^/")
        assert "u0000" in director["health_check_fcgi_script_filename"]["pattern"]
        backend = components["BackendCreateRequest"]["properties"]
        assert backend["health_check_interval"]["minimum"] == 0.1 and backend["capacity"]["maximum"] == 1_000_000
        audit = self.call("GET", "/api/v1/schema/", expect=200).json()["paths"]["/api/v1/audit/"]["get"]
        limit = next(p for p in audit["parameters"] if p["name"] == "limit")
        assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 500)
        assert {"actor", "director", "backend", "action", "since", "until"} <= {p["name"] for p in audit["parameters"]}

    def test_creates_link_to_reading_changing_and_deleting_what_they_made(self):
        paths = self.call("GET", "/api/v1/schema/", expect=200).json()["paths"]
        links = paths["/api/v1/directors/"]["post"]["responses"]["201"]["links"]
        assert links["GetDirector"] == {"operationId": paths[DIRECTOR]["get"]["operationId"],
                                        "parameters": {"director": "$response.body#/name"}}
        assert {"UpdateDirector", "DeleteDirector", "CreateBackend"} <= set(links)
        backend_links = paths[DIRECTOR + "backends/"]["post"]["responses"]["201"]["links"]
        assert backend_links["DeleteBackend"]["parameters"] == {"director": "$request.path.director",
                                                                 "backend": "$response.body#/name"}
        assert set(paths["/api/v1/routes/"]["post"]["responses"]["201"]["links"]) == {
            "GetRoute", "UpdateRoute", "DeleteRoute"}

    def test_creates_require_a_body(self):
        paths = self.call("GET", "/api/v1/schema/", expect=200).json()["paths"]
        for path in ("/api/v1/directors/", DIRECTOR + "backends/", "/api/v1/routes/"):
            assert paths[path]["post"]["requestBody"]["required"] is True, path

    def test_backend_creation_takes_one_object_or_a_list(self):
        schema = self.call("GET", "/api/v1/schema/?format=json", expect=200).json()
        post = schema["paths"][DIRECTOR + "backends/"]["post"]
        body = post["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        one, many = schema["components"]["schemas"][body]["oneOf"]
        assert one == {"$ref": "#/components/schemas/BackendCreateRequest"}
        assert many == {"type": "array", "items": one}

    def test_swagger_ui_is_served_from_local_static_files(self):
        html = self.call("GET", "/api/v1/docs/", expect=200, client=self.viewer).content.decode()
        assert "/api/v1/schema/" in html
        sources = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert sources and not [s for s in sources if s.startswith(("http:", "https:", "//"))], sources
        bundle = next(s for s in sources if s.endswith("swagger-ui-bundle.js"))
        assert finders.find(bundle.removeprefix("/static/")), bundle
