"""Unlearning methods, found by name in ``METHODS``. Each module registers one method; the list below is
explicit so that it can be read (and grepped) in one place."""

from forgetflow.methods.base import (  # noqa: F401
    METHODS,
    MethodConfig,
    MethodSpec,
    Needs,
    UnlearnData,
    data_for,
    register_method,
)
from forgetflow.methods import finetune  # noqa: F401,E402
from forgetflow.methods import neggrad_plus  # noqa: F401,E402
from forgetflow.methods import mu_mis  # noqa: F401,E402
from forgetflow.methods import rfa  # noqa: F401,E402
from forgetflow.methods import scrub  # noqa: F401,E402
from forgetflow.methods import ssd  # noqa: F401,E402
from forgetflow.methods import bad_teacher  # noqa: F401,E402
from forgetflow.methods import retrain  # noqa: F401,E402
from forgetflow.methods import aru  # noqa: F401,E402
from forgetflow.methods import rem  # noqa: F401,E402
from forgetflow.methods import gradient_ascent  # noqa: F401,E402
from forgetflow.methods import random_labels  # noqa: F401,E402
from forgetflow.methods import l1_sparse  # noqa: F401,E402
from forgetflow.methods import salun  # noqa: F401,E402
