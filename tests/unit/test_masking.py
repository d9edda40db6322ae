"""The one masking function: URL passwords, secret-named values and DVC remote options never leave in output."""

import pytest

from forgetflow.config import Params
from forgetflow.masking import MASK, is_secret_name, mask_secrets, mask_text


@pytest.mark.parametrize("text, expected", [
    ("postgresql+psycopg://ff:pw@db:5432/ledger", "postgresql+psycopg://ff:***@db:5432/ledger"),
    ("http://admin:p%40ss@prefect.internal:4200/api", "http://admin:***@prefect.internal:4200/api"),
    ("no server answers at PREFECT_API_URL=https://u:tok@h/api (ConnectError)",
     "no server answers at PREFECT_API_URL=https://u:***@h/api (ConnectError)"),
    ("postgresql://h/db?user=ff&password=pw", "postgresql://h/db?user=ff&password=***"),
    ("s3://b/k?X-Amz-Signature=abc&X-Amz-Date=1", "s3://b/k?X-Amz-Signature=***&X-Amz-Date=1"),
    ("sqlite:///state/ledger.db", "sqlite:///state/ledger.db"),
    ("postgresql://ff@db/ledger", "postgresql://ff@db/ledger"),
    ("http://127.0.0.1:4200/api", "http://127.0.0.1:4200/api"),
    ("plain words: user:pw without a scheme", "plain words: user:pw without a scheme"),
])
def test_mask_text(text, expected):
    assert mask_text(text) == expected


def test_names_that_are_secrets():
    assert all(map(is_secret_name, ["password", "PASSWORD", "db_password", "token", "api-key", "secret_access_key",
                                    "access_key_id", "sas_token", "connection_string", "Authorization", "sig"]))
    assert not any(map(is_secret_name, ["passed", "author", "tokens_per_s", "signal", "keep_repos", "sample_id",
                                        "manifest_sha256", "prev_sha256"]))


def test_resolved_params_are_masked_and_the_settings_untouched():
    params = Params.model_validate({
        "ledger": {"url": "postgresql://ff:Ledger-Pw@db/ledger"},
        "tracking": {"uri": "https://ml:Track-Pw@mlflow.internal"},
        "versioning": {"remote_url": "s3://bucket/dvc", "remote_options": {"region": "eu", "account_key": "K"}},
    })
    masked = mask_secrets(params.model_dump(mode="json"))
    assert masked["ledger"]["url"] == "postgresql://ff:***@db/ledger"
    assert masked["tracking"]["uri"] == "https://ml:***@mlflow.internal"
    assert masked["versioning"]["remote_options"] == {"region": MASK, "account_key": MASK}
    assert masked["versioning"]["remote_url"] == "s3://bucket/dvc" and masked["seed"] == params.seed
    assert params.ledger.url == "postgresql://ff:Ledger-Pw@db/ledger"  # output only


def test_documents_keep_their_shape():
    doc = {"gates": [{"name": "g", "pass": True, "value": 1.5}], "db": {"password": "x", "port": 5432},
           "note": "pushed to https://u:x@h/r", "empty": {"token": ""}, "nested": ("a", {"api_key": 7})}
    assert mask_secrets(doc) == {"gates": [{"name": "g", "pass": True, "value": 1.5}],
                                 "db": {"password": MASK, "port": 5432}, "note": "pushed to https://u:***@h/r",
                                 "empty": {"token": ""}, "nested": ("a", {"api_key": MASK})}


def test_receipt_bodies_carry_no_credential():
    import pandas as pd

    from forgetflow.data.manifest import ROW_COLUMNS, Manifest
    from forgetflow.receipts import build_bodies, seal

    manifest = Manifest("b-1", "digits", 1, "f" * 64, pd.DataFrame(columns=ROW_COLUMNS), {})
    context = {"mlflow": {"run_id": "abc", "tracking": "postgresql://ml:Receipt-Pw-4@db/mlflow"},
               "purge": {"remote": "https://u:Receipt-Pw-4@store.internal/dvc", "api_key": "Receipt-Pw-4"}}
    body = build_bodies(manifest, "m.json", "0" * 64, [{"request_id": "r-1", "subject_id": "s"}], context)[0]
    sealed = seal(body, 1, None)
    assert "Receipt-Pw-4" not in str(sealed)
    assert sealed["mlflow"] == {"run_id": "abc", "tracking": "postgresql://ml:***@db/mlflow"}


def test_log_records_are_masked_once_installed(caplog, monkeypatch):
    import logging

    from forgetflow.masking import install_log_masking

    monkeypatch.setattr(logging, "_logRecordFactory", logging.getLogRecordFactory())  # restored afterwards
    install_log_masking()
    install_log_masking()  # idempotent: one wrapper, not two
    log = logging.getLogger("forgetflow.test-masking")
    with caplog.at_level(logging.INFO, logger="forgetflow.test-masking"):
        log.info("could not emit to %s (%s)", "http://ops:Log-Pw-6@prefect/api", ConnectionError("refused"))
        log.warning("push to https://u:Log-Pw-6@store/dvc failed after %d tries", 3)
        log.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:1", "GET", "/health", "1.1", 200)
    assert "Log-Pw-6" not in caplog.text
    assert "http://ops:***@prefect/api (refused)" in caplog.text and "failed after 3 tries" in caplog.text
    assert caplog.records[2].args == ("127.0.0.1:1", "GET", "/health", "1.1", 200)  # types kept
