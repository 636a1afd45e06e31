"""Co-hosts: they see the split when invited, accept it to join, get at least the policy's
floor, and everyone watching is told when the split changes (real server on loopback)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from runtime_server import Api, RuntimeProcess
from websockets.sync.client import connect


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    server = RuntimeProcess(tmp_path_factory.mktemp("hosts")).start()
    client = Api(server.url)
    yield client
    client.http.close()
    server.stop()


def live_with_invite(api: Api, weight: int) -> tuple[dict, dict, str, dict]:
    owner, cohost = api.account("creator"), api.account("creator")
    session = api.call("POST", "/v1/sessions", owner, json={}).json()["session_id"]
    invited = api.call(
        "POST", f"/v1/sessions/{session}/cohosts", owner,
        json={"creator_id": cohost["id"], "weight": weight},
    )  # fmt: skip
    assert invited.status_code == 201, invited.text
    return owner, cohost, session, invited.json()


def test_a_cohost_sees_the_split_and_joins_only_by_accepting_it(api: Api):
    owner, cohost, session, invitation = live_with_invite(api, weight=3)
    weights = {h["creator_id"]: h["weight"] for h in invitation["hosts"]}
    assert weights == {owner["id"]: 1, cohost["id"]: 3}
    assert invitation["host_floor_bps"] == 1000
    join = f"/v1/sessions/{session}/join"
    blind = api.call("POST", join, cohost, json={})
    assert (blind.status_code, blind.json()["error"]) == (409, "split_not_accepted")
    assert f"{cohost['id']} weight 3" in blind.json()["message"]
    # The owner changes the split after the invitation: what the co-host saw is not accepted.
    changed = {owner["id"]: 5, cohost["id"]: 1}
    api.call("PUT", f"/v1/sessions/{session}/split", owner, json={"weights": changed})
    stale = api.call("POST", join, cohost, json={"accept_split": invitation["split"]})
    assert (stale.status_code, stale.json()["error"]) == (409, "split_not_accepted")
    current = api.call("GET", f"/v1/sessions/{session}", cohost).json()["split"]
    joined = api.call("POST", join, cohost, json={"accept_split": current})
    assert joined.status_code == 200, joined.text


def test_every_present_host_gets_at_least_the_floor(api: Api):
    """Weights 1,000,000 : 1. A 600-coin gift owes the hosts 300; by weight the co-host would get
    0.0003, but the floor is 10% of the hosts' part: 30, and the owner 270."""
    owner, cohost, session, invitation = live_with_invite(api, weight=1)
    weights = {owner["id"]: 1_000_000, cohost["id"]: 1}
    split = api.call("PUT", f"/v1/sessions/{session}/split", owner, json={"weights": weights})
    joined = api.call(
        "POST", f"/v1/sessions/{session}/join", cohost, json={"accept_split": split.json()["split"]}
    )  # fmt: skip
    assert joined.status_code == 200, joined.text
    fan = api.account("user")
    api.buy(fan, 700)
    gift = api.call("POST", f"/v1/sessions/{session}/gifts", fan, "g", json={"coins": 600})
    shares = {s["creator_id"]: s["share_minor"] for s in gift.json()["splits"]}
    assert shares == {owner["id"]: 270, cohost["id"]: 30}


def test_a_split_change_is_pushed_to_everyone_watching(api: Api):
    owner, cohost, session, _ = live_with_invite(api, weight=1)
    viewer = api.account("user")
    url = api.http.base_url.copy_with(scheme="ws", path=f"/v1/sessions/{session}/live")
    headers = {"Authorization": f"Bearer {viewer['token']}"}
    with connect(str(url), additional_headers=headers, open_timeout=5) as socket_:
        assert json.loads(socket_.recv(timeout=5))["type"] == "state"
        weights = {owner["id"]: 2, cohost["id"]: 7}
        changed = api.call("PUT", f"/v1/sessions/{session}/split", owner, json={"weights": weights})
        while (message := json.loads(socket_.recv(timeout=5)))["type"] != "split":
            pass
        assert message["split"] == changed.json()["split"]
        assert {h["creator_id"]: h["weight"] for h in message["hosts"]} == weights


def test_a_session_has_at_most_ten_hosts(api: Api):
    owner = api.account("creator")
    session = api.call("POST", "/v1/sessions", owner, json={}).json()["session_id"]
    statuses = [
        api.call(
            "POST", f"/v1/sessions/{session}/cohosts", owner,
            json={"creator_id": api.account("creator")["id"]},
        ).status_code
        for _ in range(10)
    ]  # fmt: skip
    assert statuses == [201] * 9 + [409]  # the owner and 9 co-hosts
