import numpy as np
import pytest

from equilab.errors import ConfigError
from equilab.train.optim import learning_rate_schedule


def test_final_anneal_keeps_the_rate_then_cosines_to_the_floor():
    cfg = {"lr": 0.01, "schedule": {"name": "plateau", "anneal_fraction": 0.25, "anneal_to": 0.1}}
    lr = learning_rate_schedule(cfg, 1000)
    vals = np.array([float(lr(s)) for s in (0, 500, 750, 875, 1000)])
    # constant up to step 750, half way down the cosine at 875, the floor (0.1 x lr) at the end
    np.testing.assert_allclose(vals, [0.01, 0.01, 0.01, 0.01 * (0.1 + 0.9 * 0.5), 0.001], rtol=1e-6)
    assert float(lr(800)) < float(lr(760)) < 0.01


def test_final_anneal_composes_with_warmup_and_cosine():
    cfg = {"lr": 1.0, "schedule": {"name": "cosine", "warmup_steps": 10, "anneal_fraction": 0.5, "anneal_to": 0.0}}
    plain = learning_rate_schedule({"lr": 1.0, "schedule": {"name": "cosine", "warmup_steps": 10}}, 100)
    lr = learning_rate_schedule(cfg, 100)
    assert float(lr(5)) == pytest.approx(float(plain(5)))
    assert float(lr(40)) == pytest.approx(float(plain(40)))
    assert float(lr(75)) == pytest.approx(float(plain(75)) * 0.5, rel=1e-5)
    assert float(lr(100)) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("sched, field", [({"anneal_fraction": 1.5}, "anneal_fraction"),
                                          ({"anneal_fraction": 0.2, "anneal_to": -1}, "anneal_to"),
                                          ({"anneal_fraction": "late"}, "anneal_fraction")])
def test_final_anneal_bad_values_name_the_field(sched, field):
    with pytest.raises(ConfigError, match=f"optim.schedule.{field}"):
        learning_rate_schedule({"lr": 0.01, "schedule": {"name": "plateau", **sched}}, 100)


def test_time_anneal_factor_and_the_step_schedule_it_leaves_alone():
    from equilab.train.optim import time_anneal_factor

    vals = [time_anneal_factor(u, 0.4, 0.05) for u in (0.0, 0.6, 0.8, 1.0, 1.3)]
    np.testing.assert_allclose(vals, [1.0, 1.0, 0.05 + 0.95 * 0.5, 0.05, 0.05], rtol=1e-12)
    # anneal_by=time: the step schedule has no final anneal (the trainer applies it by the clock)
    cfg = {"lr": 0.01, "schedule": {"name": "plateau", "anneal_fraction": 0.25, "anneal_to": 0.1, "anneal_by": "time"}}
    lr = learning_rate_schedule(cfg, 1000)
    assert float(lr(1000)) == pytest.approx(0.01)
