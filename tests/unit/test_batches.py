"""Go-live batches for rolling and canary deploys."""

import pytest

from atomicdeploy.errors import ConfigError
from atomicdeploy.plan import plan_batches

NAMES = [f"web{i}" for i in range(1, 11)]


def test_everything_at_once_by_default():
    assert plan_batches(NAMES, None) == [NAMES]


def test_batches_of_n_hosts_or_a_percentage():
    assert plan_batches(NAMES, "4") == [NAMES[:4], NAMES[4:8], NAMES[8:]]
    assert plan_batches(NAMES, "25%") == [NAMES[:3], NAMES[3:6], NAMES[6:9], NAMES[9:]]
    assert plan_batches(NAMES, "100%") == [NAMES]


def test_canary_first_then_the_rest_or_its_batches():
    assert plan_batches(NAMES, None, canary=1) == [NAMES[:1], NAMES[1:]]
    assert plan_batches(NAMES, "5", canary=2) == [NAMES[:2], NAMES[2:7], NAMES[7:]]
    assert plan_batches(NAMES[:2], None, canary=5) == [NAMES[:2]]


@pytest.mark.parametrize("bad", ["0", "-1", "x", "0%", "150%", "1.5"])
def test_bad_batch_sizes_are_usage_errors(bad):
    with pytest.raises(ConfigError) as exc:
        plan_batches(NAMES, bad)
    assert exc.value.exit_code == 2
