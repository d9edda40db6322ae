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
