"""Reads are answered beside the ledger writer, and lists come in bounded pages (real server)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from runtime_server import Api, RuntimeProcess


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    server = RuntimeProcess(tmp_path_factory.mktemp("reads")).start()
    client = Api(server.url)
    yield client
    client.http.close()
    server.stop()


def operations(api: Api) -> int:
    """Operations the ledger writer has run (its health counter)."""
    return api.http.get("/v1/health").json()["operations"]


def test_reads_never_queue_on_the_writer(api: Api):
    creator, user = api.account("creator"), api.account("user")
    session = api.call("POST", "/v1/sessions", creator, json={}).json()["session_id"]
    api.call("POST", "/v1/products", creator, json={"name": "mug", "price_minor": 900})
    before = operations(api)
    for _ in range(10):  # 40 reads
        assert api.call("GET", "/v1/me", creator).status_code == 200
        assert api.call("GET", "/v1/me", user).status_code == 200
        assert api.call("GET", f"/v1/sessions/{session}", user).status_code == 200
        assert api.call("GET", f"/v1/creators/{creator['id']}/products", user).status_code == 200
    # None of the 40 went through the writer; a metering tick (the session's usage and the
    # release of due holds: 2 operations) may land meanwhile.
    assert operations(api) - before <= 2


def test_products_come_in_pages_of_at_most_100(api: Api):
    creator, user = api.account("creator"), api.account("user")
    made = [
        api.call(
            "POST", "/v1/products", creator, json={"name": f"n{i}", "price_minor": 100 + i}
        ).json()["product_id"]
        for i in range(7)
    ]
    path = f"/v1/creators/{creator['id']}/products"
    seen, after, pages = [], None, 0
    while True:
        params = {"limit": 3, **({"after": after} if after else {})}
        page = api.call("GET", path, user, params=params).json()
        seen += [p["product_id"] for p in page["products"]]
        pages += 1
        after = page["next"]
        if after is None:
            break
    assert (pages, seen) == (3, sorted(made))  # 3 + 3 + 1, in id (creation) order
    first = api.call("GET", path, user).json()
    assert len(first["products"]) == 7 and first["next"] is None  # default page: 50
    for bad in ({"limit": 0}, {"limit": 101}, {"limit": "ten"}, {"after": "x" * 201}):
        response = api.call("GET", path, user, params=bad)
        assert response.status_code == 422, (bad, response.text)
