"""The HTTP intake against a real SQLite ledger: FastAPI's TestClient in process, the guarded ASGI app driven
message by message, and real uvicorn servers (concurrent retries; the access log and streamed bodies).
Authentication before the body, body limits, idempotency, conflicts, field-named 422s, all-or-nothing lists."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import select
import socket
import threading
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from forgetflow.errors import ForgetflowError
from forgetflow.intake.app import check_token, create_app
from forgetflow.project import Project
from tests.conftest import make_project_dir
from tests.serving.conftest import TOKEN, forgetflow_cmd, free_port, quiet_env

AUTH = {"Authorization": f"Bearer {TOKEN}"}
# two days ago, whole seconds: inside intake.max_age_days whenever the suite runs
WHEN = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2)).replace(microsecond=0)
ONE = {"request_id": "up-1", "subject_id": "subj-00001", "reason": "privacy",
       "received_at": WHEN.strftime("%Y-%m-%dT%H:%M:%SZ")}


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project.load(make_project_dir(tmp_path / "p", "intake: {max_items: 3}\n") / "params.yaml")


@pytest.fixture
def client(project: Project):
    with TestClient(create_app(project, TOKEN)) as c:
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
    assert body["state"] == "pending" and body["received_at"] == WHEN.isoformat() and body["receipt"] is None
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
    ({"received_at": "0001-01-01T00:00:00+01:00"}, "received_at"),  # year 0 in UTC: was a 500 (OverflowError)
    ({"received_at": "1970-01-01T00:00:00Z"}, "received_at"),        # older than intake.max_age_days
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
    when = WHEN.isoformat()
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


def test_the_far_past_is_refused_with_the_reason(client, project):
    r = client.post("/requests", json={**ONE, "received_at": "1970-01-01T00:00:00Z"}, headers=AUTH)
    assert r.status_code == 422 and "intake.max_age_days" in r.json()["detail"][0]["msg"]
    r = client.post("/requests", json={**ONE, "received_at": "0001-01-01T00:00:00+01:00"}, headers=AUTH)
    assert r.status_code == 422 and "out of range" in r.json()["detail"][0]["msg"]
    assert _stored(project) == {}


# ---- the guard: token before body, bytes counted as they arrive --------------------------------------
def _drive(app, headers: dict[str, str], chunks: list[bytes], path: str = "/requests",
           query: bytes = b"") -> tuple[int, int, dict]:
    """POST to the guarded ASGI app with a chunked body that arrives one ``receive()`` at a time.

    Returns (status, how many chunks the app read, the scope as the server holds it afterwards)."""
    read = 0
    started: dict = {}

    async def receive() -> dict:
        nonlocal read
        if read < len(chunks):
            read += 1
            return {"type": "http.request", "body": chunks[read - 1], "more_body": read < len(chunks)}
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            started.update(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "root_path": "", "query_string": query,
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8787),
             "headers": [(b"host", b"intake"), (b"content-type", b"application/json"),
                         (b"transfer-encoding", b"chunked"), *((k.lower().encode(), v.encode()) for k, v in headers.items())]}
    asyncio.run(app(scope, receive, send))
    return started["status"], read, scope


def test_no_token_is_401_before_one_byte_of_the_body_is_read(project):
    """FastAPI reads and parses the body before a route's dependencies run: a malformed body without a token got
    422, and a 40 MB chunked body without a token was read whole. The guard answers 401 first."""
    app = create_app(project, TOKEN)
    megabyte = b"x" * (1 << 20)
    for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"}):
        status, read, _ = _drive(app, headers, [megabyte] * 40)
        assert (status, read) == (401, 0), headers
    with TestClient(app) as c:
        r = c.post("/requests", content=b"{not json", headers={"Content-Type": "application/json"})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert c.post("/requests", content=b"{not json", headers={**AUTH, "Content-Type": "application/json"}).status_code == 422
    assert _stored(project) == {}


def test_a_chunked_body_is_counted_as_it_arrives_and_stopped_at_the_limit(project):
    app = create_app(project, TOKEN)  # intake.max_items 3: a limit of 3 * 2 KiB + 64 KiB
    assert app.limit == 3 * 2048 + 64 * 1024
    piece = b" " * (16 * 1024)
    status, read, _ = _drive(app, AUTH, [piece] * 2560)  # 40 MB, no Content-Length
    assert status == 413 and read == app.limit // len(piece) + 1
    body = b"[" + b" " * (app.limit - 2) + b"]"  # exactly at the limit: read, then judged (an empty list)
    status, read, _ = _drive(app, AUTH, [body[i:i + len(piece)] for i in range(0, len(body), len(piece))])
    assert status == 422


def test_a_token_in_the_query_string_is_refused_and_masked(project):
    """uvicorn's access log prints the query string from the ASGI scope: the guard masks every value there."""
    app = create_app(project, TOKEN)
    status, read, scope = _drive(app, {}, [b"{}"], query=f"token={TOKEN}&x=1".encode())
    assert (status, read) == (401, 0)
    assert scope["query_string"] == b"token=***&x=***"
    status, _, scope = _drive(app, {}, [b""], path="/health", query=f"access_token={TOKEN}".encode())
    assert TOKEN.encode() not in scope["query_string"]


def test_an_unreadable_receipt_answers_a_generic_500_and_logs_the_detail(client, project, caplog):
    book = project.open_ledger()
    assert client.post("/requests", json=ONE, headers=AUTH).status_code == 201
    book.start_batch("b-1")
    book.claim("b-1", 10)
    rel = "state/receipts/00000001-up-1.json"
    book.finish_batch("b-1", ["up-1"], [{"seq": 1, "request_id": "up-1", "batch_id": "b-1", "sha256": "a" * 64,
                                         "prev_sha256": None, "path": rel, "issued_at": dt.datetime.now(dt.timezone.utc)}],
                      {}, None)
    path = project.root / rel
    for content in (None, "{ not json"):
        if content is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        with caplog.at_level(logging.ERROR, logger="forgetflow.intake.app"):
            r = client.get("/requests/up-1/receipt", headers=AUTH)
        assert r.status_code == 500
        detail = r.json()["detail"]
        assert "up-1" in detail and "log" in detail
        assert str(project.root) not in r.text and "receipts" not in r.text and "Errno" not in r.text
        assert str(path) in caplog.text
        caplog.clear()
    path.write_text('{"seq": 1}')
    assert client.get("/requests/up-1/receipt", headers=AUTH).json() == {"seq": 1}


def _post_chunked(port: int, headers: dict[str, str], chunk: bytes, chunks: int, first_wait: float) -> tuple[int, int]:
    """A chunked POST over a raw socket, chunk by chunk, stopping once the server has answered.

    ``first_wait``: how long to wait for an answer to the headers alone before sending the first chunk.
    Returns (the status, how many chunks were sent before the answer came)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": "intake", "Content-Type": "application/json",
                                                      "Transfer-Encoding": "chunked", **headers}.items())
        sock.sendall(f"POST /requests HTTP/1.1\r\n{head}\r\n".encode())
        frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        wait = first_wait
        while sent < chunks and not select.select([sock], [], [], wait)[0]:
            wait = 0.0
            try:
                sock.sendall(frame)
            except OSError:  # the server answered and closed while this chunk was on its way
                break
            sent += 1
        else:
            if sent == chunks:
                sock.sendall(b"0\r\n\r\n")
        answer = sock.recv(4096)
    return int(answer.split(b" ", 2)[1]), sent


def test_a_real_server_checks_the_token_first_and_logs_no_token(tmp_path, start_child):
    root = make_project_dir(tmp_path / "p", "intake: {max_items: 3}\n")
    port = free_port()
    server = start_child("intake", forgetflow_cmd("intake", "--port", str(port)), root,
                         quiet_env(FORGETFLOW_INTAKE_TOKEN=TOKEN))
    base = f"http://127.0.0.1:{port}"
    server.wait_http(f"{base}/health", timeout=240)
    assert httpx.get(f"{base}/requests/up-1", params={"token": TOKEN}).status_code == 401
    assert httpx.get(f"{base}/health", params={"access_token": TOKEN}).status_code == 200

    status, sent = _post_chunked(port, {}, b" " * (1 << 20), 40, first_wait=15.0)  # 40 MB, no token
    assert (status, sent) == (401, 0)
    status, sent = _post_chunked(port, AUTH, b" " * (64 * 1024), 640, first_wait=0.5)  # 40 MB, with the token
    assert status == 413 and sent < 320, sent  # the answer came long before the client was done (loopback buffers)
    server.stop()
    log = server.log.read_text()
    assert "GET /requests/up-1?token=*** HTTP/1.1" in log and "access_token=***" in log
    assert TOKEN not in log


def test_accepted_ids_go_to_the_injected_sender_and_a_failing_sender_loses_nothing(project):
    calls: list[list[str]] = []

    def sender(ids):
        calls.append(list(ids))
        if len(calls) == 1:
            raise ConnectionError("http://ops:Sender-Pw@prefect:4200/api refused")
        return True

    app = create_app(project, TOKEN, send_accepted=sender)
    with TestClient(app) as c:
        assert c.get("/health").json()["events"] == "on"
        assert c.post("/requests", json=ONE, headers=AUTH).status_code == 201
        assert c.post("/requests", json=ONE, headers=AUTH).status_code == 200  # a retry announces nothing
        many = [{**ONE, "request_id": f"n-{i}", "subject_id": f"subj-{i:05d}"} for i in range(3)]
        assert c.post("/requests", json=many, headers=AUTH).status_code == 201
    # the app's shutdown sends what is queued; a failed send is counted, the requests stay stored
    assert sorted(i for call in calls for i in call) == ["n-0", "n-1", "n-2", "up-1"]
    assert app.state.notifier.failed == 1 and app.state.notifier.sent == len(calls) - 1
    assert sorted(_stored(project)) == ["n-0", "n-1", "n-2", "up-1"]
    with TestClient(create_app(project, TOKEN)) as c:
        assert c.get("/health").json()["events"] == "off"
