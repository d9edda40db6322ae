"""The HTTP intake against a real SQLite ledger: FastAPI's TestClient in process, and one real uvicorn server
for concurrent retries. Authentication, idempotency, conflicts, field-named 422s, all-or-nothing lists."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from forgetflow.errors import ForgetflowError
from forgetflow.project import Project
from tasks.intake import check_token, create_app
from tests.conftest import make_project_dir
from tests.serving.conftest import TOKEN, forgetflow_cmd, free_port, quiet_env

AUTH = {"Authorization": f"Bearer {TOKEN}"}
ONE = {"request_id": "up-1", "subject_id": "subj-00001", "reason": "privacy", "received_at": "2026-11-01T10:00:00Z"}


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project.load(make_project_dir(tmp_path / "p", "intake: {max_items: 3}\n") / "params.yaml")


@pytest.fixture
def client(project: Project):
    with TestClient(create_app(project, TOKEN, announce=False)) as c:
        yield c


def _stored(project: Project) -> dict[str, dict]:
    return {r["request_id"]: r for r in project.open_ledger().list()}


def test_token_is_required_and_compared(client, project):
    for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"}, {"Authorization": f"Basic {TOKEN}"}):
        r = client.post("/requests", json=ONE, headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"] == "Bearer"
        assert client.get("/requests/up-1", headers=headers).status_code == 401
    assert _stored(project) == {}
    assert client.post("/requests", json=ONE, headers=AUTH).status_code == 201
    assert client.get("/health").json()["status"] == "ok"  # probes need no token


def test_refuses_to_start_without_a_real_token(project):
    for token in (None, "", "   ", "short"):
        with pytest.raises(ForgetflowError, match="FORGETFLOW_INTAKE_TOKEN"):
            create_app(project, token)
    assert check_token(f"  {TOKEN} ") == TOKEN


def test_retry_is_idempotent_and_other_content_conflicts(client, project):
    first = client.post("/requests", json=ONE, headers=AUTH)
    assert first.status_code == 201
    body = first.json()
    assert body["state"] == "pending" and body["received_at"] == "2026-11-01T10:00:00+00:00" and body["receipt"] is None
    again = client.post("/requests", json=ONE, headers=AUTH)
    assert again.status_code == 200 and again.json() == body

    other = client.post("/requests", json={**ONE, "subject_id": "subj-00002"}, headers=AUTH)
    assert other.status_code == 409
    assert other.json()["detail"][0]["loc"] == ["body", "request_id"]
    assert "different content" in other.json()["detail"][0]["msg"]
    assert _stored(project)["up-1"]["subject_id"] == "subj-00001" and len(_stored(project)) == 1


def test_retry_without_received_at_keeps_the_first_time(client, project):
    req = {"request_id": "up-2", "sample_id": "s-1", "reason": "mislabelled"}
    first = client.post("/requests", json=req, headers=AUTH).json()
    again = client.post("/requests", json=req, headers=AUTH)
    assert again.status_code == 200 and again.json() == first
    conflict = client.post("/requests", json={**req, "reason": "poisoned"}, headers=AUTH)
    assert conflict.status_code == 409
    assert _stored(project)["up-2"]["received_at"] == first["received_at"]


@pytest.mark.parametrize("change, field", [
    ({"reason": "because"}, "reason"),
    ({"sample_id": "s-1"}, "subject_id"),              # both subject and sample
    ({"subject_id": None}, "subject_id"),              # neither
    ({"request_id": "has space"}, "request_id"),
    ({"request_id": ""}, "request_id"),
    ({"received_at": "yesterday"}, "received_at"),
    ({"received_at": "2999-01-01T00:00:00Z"}, "received_at"),
    ({"subject_id": "x" * 200}, "subject_id"),
    ({"colour": "blue"}, "colour"),
])
def test_invalid_request_is_422_naming_the_field(client, project, change, field):
    r = client.post("/requests", json={**ONE, **change}, headers=AUTH)
    assert r.status_code == 422, r.text
    assert [e["loc"] for e in r.json()["detail"]] == [["body", field]]
    assert _stored(project) == {}


def test_a_list_is_all_or_nothing(client, project):
    good = [{**ONE, "request_id": f"l-{i}", "subject_id": f"subj-{i:05d}"} for i in range(3)]
    bad = [good[0], {**good[1], "reason": "nope"}, {**good[2], "received_at": "soon"}]
    r = client.post("/requests", json=bad, headers=AUTH)
    assert r.status_code == 422
    assert [e["loc"] for e in r.json()["detail"]] == [["body", 1, "reason"]]  # schema errors first
    r = client.post("/requests", json=[good[0], good[1], {**good[2], "received_at": "soon"}], headers=AUTH)
    assert r.status_code == 422 and [e["loc"] for e in r.json()["detail"]] == [["body", 2, "received_at"]]
    assert _stored(project) == {}

    clash = [good[0], {**good[0], "subject_id": "subj-09999"}]
    r = client.post("/requests", json=clash, headers=AUTH)
    assert r.status_code == 422 and "repeats item 0" in r.json()["detail"][0]["msg"]

    r = client.post("/requests", json=good, headers=AUTH)
    assert r.status_code == 201
    assert r.json()["accepted"] == ["l-0", "l-1", "l-2"] and r.json()["duplicates"] == []
    r = client.post("/requests", json=[good[2], good[0]], headers=AUTH)
    assert r.status_code == 200 and r.json()["accepted"] == [] and r.json()["duplicates"] == ["l-2", "l-0"]

    # one conflicting item rejects the list, and the new item in it is not stored either
    mixed = [{**ONE, "request_id": "l-new", "subject_id": "subj-00100"}, {**good[1], "subject_id": "subj-00200"}]
    r = client.post("/requests", json=mixed, headers=AUTH)
    assert r.status_code == 409 and r.json()["detail"][0]["loc"] == ["body", 1, "request_id"]
    assert sorted(_stored(project)) == ["l-0", "l-1", "l-2"]

    assert client.post("/requests", json=[], headers=AUTH).status_code == 422
    huge = client.post("/requests", content=b"[" + b" " * 80_000 + b"]", headers={**AUTH, "Content-Type": "application/json"})
    assert huge.status_code == 413 and "at most" in huge.json()["detail"]
    too_many = [{**ONE, "request_id": f"m-{i}"} for i in range(4)]
    r = client.post("/requests", json=too_many, headers=AUTH)
    assert r.status_code == 422 and "at most 3" in r.json()["detail"][0]["msg"]


def test_status_and_receipt_of_unfinished_requests(client, project):
    assert client.get("/requests/nobody", headers=AUTH).status_code == 404
    assert client.get("/requests/nobody/receipt", headers=AUTH).status_code == 404
    slashed = {**ONE, "request_id": "crm/2026/7"}
    assert client.post("/requests", json=slashed, headers=AUTH).status_code == 201
    status = client.get("/requests/crm/2026/7", headers=AUTH)
    assert status.status_code == 200 and status.json()["state"] == "pending"
    receipt = client.get("/requests/crm/2026/7/receipt", headers=AUTH)
    assert receipt.status_code == 409 and "pending" in receipt.json()["detail"]


def test_openapi_describes_the_api(client):
    spec = client.get("/openapi.json").json()
    assert set(spec["paths"]) == {"/requests", "/requests/{request_id}", "/requests/{request_id}/receipt", "/health"}
    post = spec["paths"]["/requests"]["post"]
    assert {"200", "201", "401", "409", "422"} <= set(post["responses"])
    assert len(post["requestBody"]["content"]["application/json"]["examples"]) >= 2
    schema = spec["components"]["schemas"]["RequestIn"]
    assert schema["properties"]["reason"]["enum"] == ["privacy", "mislabelled", "poisoned", "other"]
    assert schema["examples"] and spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_concurrent_retries_on_a_real_server(tmp_path, start_child):
    """Upstream retries in parallel, to two intake processes on one port: every id is stored once, every
    answer is 200 or 201, nothing is lost."""
    root = make_project_dir(tmp_path / "p")
    port = free_port()
    env = quiet_env(FORGETFLOW_INTAKE_TOKEN=TOKEN)
    server = start_child("intake", forgetflow_cmd("intake", "--port", str(port), "--workers", "2"), root, env)
    base = f"http://127.0.0.1:{port}"
    server.wait_http(f"{base}/health", timeout=240)
    when = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc).isoformat()
    ids = [f"c-{i:03d}" for i in range(40)]
    answers: list[int] = []
    lock = threading.Lock()

    def worker(seed: int) -> None:
        with httpx.Client(base_url=base, headers=AUTH, timeout=60) as http:
            for i in range(len(ids)):
                rid = ids[(i + seed * 5) % len(ids)]  # every thread sends every id, in another order
                r = http.post("/requests", json={"request_id": rid, "subject_id": f"s-{rid}", "reason": "privacy",
                                                 "received_at": when})
                with lock:
                    answers.append(r.status_code)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert len(answers) == 6 * len(ids)
    assert set(answers) <= {200, 201} and answers.count(201) == len(ids), sorted(set(answers))
    stored = Project.load(root / "params.yaml").open_ledger().list()
    assert sorted(r["request_id"] for r in stored) == ids
    assert {r["source"] for r in stored} == {"http"}
