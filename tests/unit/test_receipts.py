import json

from forgetflow import receipts


def _chain(tmp_path, n=3):
    rows, prev = [], None
    for seq in range(1, n + 1):
        doc = receipts.seal({"request": {"request_id": f"r{seq}"}, "metrics": {"x": seq}}, seq, prev)
        path = receipts.receipt_path(tmp_path, seq, f"r{seq}")
        receipts.write(doc, path)
        rows.append({"seq": seq, "request_id": f"r{seq}", "sha256": doc["sha256"], "path": str(path)})
        prev = doc["sha256"]
    return rows


def test_intact_chain_verifies(tmp_path):
    result = receipts.verify(_chain(tmp_path), tmp_path)
    assert result.ok and result.checked == 3


def test_any_edit_is_detected(tmp_path):
    rows = _chain(tmp_path)
    path = tmp_path / rows[1]["path"]
    doc = json.loads(path.read_text())
    doc["metrics"]["x"] = 99
    path.write_text(json.dumps(doc))
    problems = receipts.verify(rows, tmp_path).problems
    assert any("receipt 2 (r2): content was edited" in p for p in problems)


def test_resealed_edit_breaks_the_chain(tmp_path):
    rows = _chain(tmp_path)
    path = tmp_path / rows[1]["path"]
    doc = json.loads(path.read_text())
    doc["metrics"]["x"] = 99
    forged = receipts.seal(doc, 2, doc["prev_sha256"])  # a forger recomputes this receipt's own hash...
    path.write_text(json.dumps(forged))
    problems = receipts.verify(rows, tmp_path).problems
    assert any("differs from the ledger" in p for p in problems)  # ...but the ledger's copy disagrees
    rows[1]["sha256"] = forged["sha256"]  # and forging the ledger too breaks the next link
    assert any("receipt 3 (r3): chain broken" in p for p in receipts.verify(rows, tmp_path).problems)


def test_missing_file_and_gap(tmp_path):
    rows = _chain(tmp_path)
    (tmp_path / rows[0]["path"]).unlink()
    assert any("is missing" in p for p in receipts.verify(rows, tmp_path).problems)
    assert any("sequence jumps" in p for p in receipts.verify(rows[1:], tmp_path).problems)


# ---- the chain's end: anchors and done requests (issue 9 §3) ------------------------------------------
def _batches(tmp_path, sizes=(2, 2)):
    """A chain of two batches with their anchors, as the deletion batch writes them."""
    rows, anchors, prev, seq = [], [], None, 0
    for b, size in enumerate(sizes, start=1):
        docs = []
        for _ in range(size):
            seq += 1
            doc = receipts.seal({"request": {"request_id": f"r{seq}"}, "manifest": {"batch_id": f"b{b}"}}, seq, prev)
            path = receipts.receipt_path(tmp_path, seq, f"r{seq}")
            receipts.write(doc, path)
            rows.append({"seq": seq, "request_id": f"r{seq}", "batch_id": f"b{b}", "sha256": doc["sha256"],
                         "path": str(path)})
            docs.append(doc)
            prev = doc["sha256"]
        anchors.append({**receipts.anchor_of(f"b{b}", docs), "source": f"MLflow run run-{b}"})
    return rows, anchors


def _verify(rows, anchors, tmp_path, done=None):
    return receipts.verify(rows, tmp_path, anchors=anchors, done_request_ids=done or [r["request_id"] for r in rows])


def test_anchored_chain_verifies(tmp_path):
    rows, anchors = _batches(tmp_path)
    assert anchors[1] == {"batch_id": "b2", "count": 2, "first_seq": 3, "head_seq": 4,
                          "head_sha256": rows[-1]["sha256"], "source": "MLflow run run-2"}
    result = _verify(rows, anchors, tmp_path)
    assert result.ok, result.problems


def test_edit_is_detected_with_anchors(tmp_path):
    rows, anchors = _batches(tmp_path)
    path = tmp_path / rows[0]["path"]
    doc = json.loads(path.read_text())
    doc["request"]["request_id"] = "someone-else"
    path.write_text(json.dumps(doc))
    problems = _verify(rows, anchors, tmp_path).problems
    assert any(p.startswith("receipt 1 (r1): content was edited") for p in problems)


def test_delete_middle_is_detected(tmp_path):
    rows, anchors = _batches(tmp_path)
    (tmp_path / rows[1]["path"]).unlink()  # the file and its ledger row go
    cut = rows[:1] + rows[2:]
    problems = _verify(cut, anchors, tmp_path, done=[r["request_id"] for r in rows]).problems
    assert any("receipt 3 (r3): ledger sequence jumps to 3 (expected 2)" in p for p in problems)
    assert any(p.startswith("batch b1: its anchor (MLflow run run-1) holds 2 receipt(s), the chain has 1") for p in problems)
    assert "request r2 is done but has no receipt in the chain" in problems


def test_delete_tail_with_its_ledger_rows_is_detected(tmp_path):
    """The chain that is left is intact; only the anchors and the done requests show what was cut."""
    rows, anchors = _batches(tmp_path)
    for row in rows[2:]:
        (tmp_path / row["path"]).unlink()
    cut = rows[:2]
    assert receipts.verify(cut, tmp_path).ok  # what verify used to check: nothing wrong
    problems = _verify(cut, anchors, tmp_path, done=[r["request_id"] for r in rows]).problems
    assert ("batch b2: its anchor (MLflow run run-2) holds 2 receipt(s) ending at receipt 4, the chain has none of "
            "them (cut from the chain)") in problems
    assert any("the chain ends at receipt 2, but an anchor names receipt 4" in p for p in problems)
    # with the requests' ledger rows gone too, the anchor alone still tells
    assert _verify(cut, anchors, tmp_path, done=["r1", "r2"]).problems[0].startswith("batch b2: its anchor")


def test_rewritten_tail_and_its_ledger_copy_is_detected(tmp_path):
    rows, anchors = _batches(tmp_path)
    path = tmp_path / rows[-1]["path"]
    doc = json.loads(path.read_text())
    doc["request"]["note"] = "rewritten"
    forged = receipts.seal(doc, doc["seq"], doc["prev_sha256"])
    path.write_text(json.dumps(forged))
    rows[-1]["sha256"] = forged["sha256"]  # the ledger's copy rewritten as well
    assert receipts.verify(rows, tmp_path).ok  # the chain alone cannot tell
    problems = _verify(rows, anchors, tmp_path).problems
    assert len(problems) == 1 and problems[0].startswith(
        "batch b2: its anchor (MLflow run run-2) says receipt 4 hashes to") and problems[0].endswith("(rewritten)")


def test_unanchored_batches_and_double_receipts_are_named(tmp_path):
    rows, anchors = _batches(tmp_path)
    problems = _verify(rows, anchors[:1], tmp_path).problems
    assert problems == ["batch b2: 2 receipt(s) (from receipt 3) are not anchored (no MLflow run tag and no batch "
                        "JSON names its head)"]
    rows[3]["request_id"] = "r3"
    assert "request r3 has 2 receipts (receipts 3, 4)" in receipts.check_done(rows, ["r1", "r2", "r3"])
