"""The HTTP intake: upstream privacy systems file erasure requests over HTTP (webhook style).

- ``forgetflow.ledger.intake``: the request models and the validate-and-store step (no HTTP);
- ``app.py``: the FastAPI app and the guard in front of it (token before body, body size, access log);
- ``notifier.py``: hands accepted request ids to an injected sender from a background thread;
- ``server.py``: uvicorn start-up (one process, or several sharing one socket).

The core never imports Prefect: the Prefect event sender (``tasks/events.py:intake_sender``) is injected by
the command that starts the server (``forgetflow intake``). Operations: docs/operations.md §4.
"""
