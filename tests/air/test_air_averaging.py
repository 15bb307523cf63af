"""The moving average of the weights: its update, the swap used for evaluation, and in a
``probnets train air`` run what is checkpointed, resumed and loaded."""

import pytest
import torch

from probnets.models.air import AIR
from probnets.tasks import AIRConfig, run_task
from probnets.train.averaging import AverageWeights, ExponentialMovingAverage


def test_update_follows_the_warmed_up_exponential_average():
    layer = torch.nn.Linear(2, 3)
    average = ExponentialMovingAverage(layer, decay=0.5, names=["weight"])
    expected = layer.weight.detach().clone()
    for n in range(6):
        with torch.no_grad():
            layer.weight.add_(1.0)
        average.update()
        beta = min(0.5, (1 + n) / (10 + n))
        expected = beta * expected + (1 - beta) * layer.weight.detach()
    torch.testing.assert_close(average.average.weight, expected)
    assert int(average.num_updates) == 6
    assert set(average.state_dict()) == {"average.weight", "num_updates"}


def test_an_update_for_k_steps_is_k_updates_with_the_same_parameters():
    one, many = torch.nn.Linear(2, 3), torch.nn.Linear(2, 3)
    many.load_state_dict(one.state_dict())
    a, b = ExponentialMovingAverage(one, decay=0.8), ExponentialMovingAverage(many, decay=0.8)
    with torch.no_grad():
        one.weight.add_(1.0)
        many.weight.add_(1.0)
    for _ in range(3):
        a.update()
    b.update(steps=3)
    # exact when the warm-up is over (beta = decay): here only close
    torch.testing.assert_close(a.average.weight, b.average.weight, atol=0.02, rtol=0)
    a.num_updates.fill_(100)  # past the warm-up: beta = decay
    b.load_state_dict(a.state_dict())
    a.update()
    a.update()
    b.update(steps=2)
    torch.testing.assert_close(a.average.weight, b.average.weight)
    assert int(b.num_updates) == 102


class _Trainer:
    def __init__(self, steps, eval_every=None, checkpoint_every=None):
        self.step = 0
        self.config = type(
            "Config",
            (),
            dict(steps=steps, eval_every=eval_every, checkpoint_every=checkpoint_every),
        )


def test_average_weights_updates_every_k_steps_and_where_it_is_read():
    average = ExponentialMovingAverage(torch.nn.Linear(2, 3), decay=0.9)
    callback, trainer = AverageWeights(average, every=4), _Trainer(11, eval_every=6)
    updated = []
    for step in range(1, 12):
        trainer.step = step
        before = int(average.num_updates)
        callback.on_train_step_end(trainer)
        if int(average.num_updates) != before:
            updated.append(step)
        assert int(average.num_updates) in (before, step)
    assert updated == [4, 6, 8, 11]
    with pytest.raises(ValueError, match="every must be a positive integer, got 0"):
        AverageWeights(average, every=0)


def test_swapped_puts_the_average_in_and_restores_the_last_iterate():
    layer = torch.nn.Linear(2, 3)
    average = ExponentialMovingAverage(layer, decay=0.9)
    with torch.no_grad():
        layer.weight.mul_(2)
    last, mean = layer.weight.detach().clone(), average.average.weight.clone()
    x = torch.randn(4, 2)
    with average.swapped() as module:
        assert module is layer
        torch.testing.assert_close(layer.weight, mean)
        torch.testing.assert_close(layer(x), torch.nn.functional.linear(x, mean, layer.bias))
    torch.testing.assert_close(layer.weight, last)
    torch.testing.assert_close(average.average.weight, mean)


def test_average_follows_the_parameters_dtype():
    layer = torch.nn.Linear(2, 3).double()
    average = ExponentialMovingAverage(layer, decay=0.9)
    average.update()
    assert average.average.weight.dtype == torch.float64


def test_bad_arguments():
    layer = torch.nn.Linear(2, 3)
    with pytest.raises(ValueError, match=r"decay must be a float in \(0, 1\), got 1.0"):
        ExponentialMovingAverage(layer, decay=1.0)
    with pytest.raises(ValueError, match=r"unknown \['bias2'\]"):
        ExponentialMovingAverage(layer, names=["bias2"])
    with pytest.raises(TypeError, match="module must be a torch.nn.Module"):
        ExponentialMovingAverage("layer")
    with pytest.raises(TypeError, match="average must be an ExponentialMovingAverage"):
        AverageWeights(layer)


def _config(out, steps, **changes):
    settings = dict(
        steps=steps,
        batch_size=4,
        rnn_hidden_size=8,
        window_size=12,
        num_validation=8,
        num_test=8,
        checkpoint_every=2,
        eval_every=2,
        ema=0.5,
        out=str(out),
        progress=False,
    )
    return AIRConfig(**dict(settings, **changes))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("air-ema")
    whole = run_task(_config(root / "whole", 4))
    run_task(_config(root / "resumed", 2))
    resumed = run_task(_config(root / "resumed", 4, resume=True))
    return root, whole, resumed


def test_resumed_run_continues_the_same_average_and_batches(runs):
    root, whole, resumed = runs
    a = torch.load(root / "whole" / "last.pt", weights_only=True)
    b = torch.load(root / "resumed" / "last.pt", weights_only=True)
    assert len(a["modules"]) == 2  # the model and its average
    for state_a, state_b in zip(a["modules"], b["modules"]):
        assert set(state_a) == set(state_b)
        for key in state_a:
            assert torch.equal(state_a[key], state_b[key]), key
    assert int(a["modules"][1]["num_updates"]) == 4
    assert torch.equal(a["data"]["generator"], b["data"]["generator"])
    assert whole["eval"] == resumed["eval"]


def test_the_checkpoint_loads_as_the_average_and_the_summary_has_the_interval(runs):
    root, whole, _ = runs
    path = root / "whole" / "last.pt"
    state = torch.load(path, weights_only=True)
    averaged, last = AIR.load(path), AIR.load(path, average=False)
    for name, value in averaged.state_dict().items():
        stored = state["modules"][1].get("average." + name)
        expected = state["modules"][0][name] if stored is None else stored
        assert torch.equal(value, expected), name
        assert torch.equal(last.state_dict()[name], state["modules"][0][name]), name
    assert not torch.equal(averaged.rnn.weight_ih, last.rnn.weight_ih)
    final = whole["eval"]
    low, high = final["test_count_accuracy_interval"]
    assert low <= final["test_count_accuracy"] <= high and final["test_num_images"] == 8
    assert "validation_count_accuracy" in final and final["step"] == 4


def test_old_run_is_one_flag_set_away(tmp_path):
    summary = run_task(
        _config(
            tmp_path / "old",
            2,
            fresh_canvases=False,
            num_train=16,
            validation_fraction=0.0,
            ema=0.0,
        )
    )
    state = torch.load(tmp_path / "old" / "last.pt", weights_only=True)
    assert len(state["modules"]) == 1 and "order" in state["data"]  # a BatchSampler's state
    assert "validation_count_accuracy" not in summary["eval"]
    assert 0 <= summary["eval"]["test_count_accuracy"] <= 1
