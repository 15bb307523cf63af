"""``probnets train gated`` builds the model :meth:`NeuronDAG.fit` would train, unless flags
ask for the earlier setting."""

import pytest
import torch

from probnets.infer import DisARM_ELBO, Relaxed_ELBO
from probnets.tasks.config import ConfigError
from probnets.tasks.gated import GatedConfig, GatedTask

CPU = torch.device("cpu")


def test_default_run_is_the_fit_default():
    config = GatedConfig(num_train=300, hidden=4, progress=False)
    run = GatedTask().build(config, CPU)
    net, y = run.module, run.data.tensors[1]
    assert isinstance(run.loss, Relaxed_ELBO) and run.loss.temperature == 0.5
    assert config.batch_size == 200 and config.prior_p == 0.01
    assert run.param_groups["*gate_logits"] == {"lr": 0.05, "betas": (0.9, 0.9)}
    assert net.noise_scale_mode == "auto"
    # Fixed at each target's standard deviation in the training data, before training.
    assert y.shape == (300, 4)
    torch.testing.assert_close(net.target_scale, y.std(0))
    assert torch.equal(net.gate_logits.detach(), torch.zeros(net.num_gates))


def test_earlier_setting_is_one_flag_each():
    config = GatedConfig(
        num_train=300, hidden=4, estimator="disarm", batch_size=100, noise_scale="1", progress=False
    )
    run = GatedTask().build(config, CPU)
    assert isinstance(run.loss, DisARM_ELBO)
    assert run.module.noise_scale_mode == "fixed" and run.module.fixed_noise_scale == 1.0
    learned = GatedTask().build(
        GatedConfig(num_train=300, hidden=4, noise_scale="learned", progress=False), CPU
    )
    assert learned.module.noise_scale_mode == "learned"


@pytest.mark.parametrize("value", ["abc", "0", "-1", "inf"])
def test_bad_noise_scale_names_the_field(value):
    with pytest.raises(ConfigError, match="noise_scale must be auto, learned or a positive"):
        GatedConfig(noise_scale=value)
