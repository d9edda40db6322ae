"""The configured task runner and the command-line flags that override it for one run."""

import pytest

from flows import runners
from forgetflow.config import Params, RunnerParams


def test_flags_override_the_configured_runner():
    params = Params(runner=RunnerParams(kind="local", max_workers=3))
    assert runners.override(params) is params
    assert runners.describe(params) == "local threads:3"
    assert runners.describe(runners.override(params, workers=1)) == "local threads:1"
    to_dask = runners.override(params, workers=4, dask="tcp://10.0.0.5:8786")
    assert to_dask.runner.kind == "dask" and runners.describe(to_dask) == "dask tcp://10.0.0.5:8786"
    back = runners.override(Params(runner=RunnerParams(kind="dask", n_workers=3)), workers=2)
    assert back.runner.kind == "local" and back.runner.n_workers == 3 and runners.describe(back) == "local threads:2"
    with pytest.raises(ValueError):
        runners.override(params, workers=0)


def test_a_workers_flag_gives_a_thread_runner_even_when_params_say_dask():
    from prefect.task_runners import ThreadPoolTaskRunner

    params = runners.override(Params(runner=RunnerParams(kind="dask", address="tcp://nowhere:1")), workers=2)
    assert isinstance(runners.task_runner(params), ThreadPoolTaskRunner)
