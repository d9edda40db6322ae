"""Why a request asks for erasure: the ledger's domain list of reasons (no imports, so anything may use it).

The reasons are part of the request, not of the configuration: ``params.yaml`` maps each of them to a
method (``unlearn.by_reason``), and :func:`forgetflow.project.check_params` refuses a map that leaves one out.
"""

from __future__ import annotations

# privacy: a data subject exercises a right to erasure (GDPR Art. 17, CCPA); other: any further legal ground.
# mislabelled / poisoned: the samples are corrupted training data found after the fact.
REASONS: tuple[str, ...] = ("privacy", "mislabelled", "poisoned", "other")

# Reasons whose samples are corrupted data: they are unlearned with the ``corrupted`` preset family (REM's
# setting), apart from (and before) the privacy requests of the same batch.
CORRUPTION_REASONS: tuple[str, ...] = ("mislabelled", "poisoned")
