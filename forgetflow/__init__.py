"""forgetflow: make a trained image classifier forget data, prove it, and ship it with receipts.

The core library is pure Python/PyTorch: it never imports Prefect, MLflow, DVC or Great Expectations.
Those live behind thin adapters in the repository's ``tasks/`` folder.
"""

__version__ = "0.1.0"
