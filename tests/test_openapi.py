from openapi_spec_validator import validate

from handlers.rest.common import spec_of


async def test_openapi_is_valid_3_1_and_covers_every_route(client):
    resp = await client.get("/openapi.json")
    spec = await resp.json()
    validate(spec)
    assert spec["openapi"].startswith("3.1")
    for route in client.app.router.routes():
        if route.method == "HEAD" or spec_of(route.handler) is None:
            continue
        path = route.resource.canonical
        assert route.method.lower() in spec["paths"].get(path, {}), f"{route.method} {path} undocumented"
    create_key = spec["paths"]["/v1/admin/api-keys"]["post"]
    schema_ref = create_key["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert schema_ref.endswith("/NewApiKey")
    assert "401" in create_key["responses"] and "403" in create_key["responses"]


async def test_api_reference_page_is_served_without_a_cdn(client):
    resp = await client.get("/api.html")
    html = await resp.text()
    assert resp.status == 200 and "/openapi.json" in html
    assert "http://" not in html and "https://" not in html
