"""probnets.load and Model.load: every task's, Trainer's and fit's checkpoint rebuilds the
trained model, which then computes what the trained model computes in-process."""

import pyro
import pytest
import torch
from torch import nn

import probnets
from probnets.loading import Loadable, register_model
from probnets.models import (
    AIR,
    VAE,
    BayesianHypernet,
    BernoulliPrior,
    LayerDAG,
    NeuronDAG,
    SigmoidBeliefNet,
    ToyBernoulli,
)
from probnets.nn import CharLanguageModel, HyperCNN, ReactiveQueryNet
from probnets.tasks import (
    AIRConfig,
    BayesHypernetConfig,
    GatedConfig,
    HyperCNNConfig,
    HyperLSTMConfig,
    ReactiveConfig,
    SBNConfig,
    VAEConfig,
    run_task,
    tasks,
)
from probnets.train import BatchSampler, LossObjective, SVIObjective, TrainConfig, Trainer
from probnets.train.averaging import ExponentialMovingAverage


def _seeded(fn, *args, **kwargs):
    pyro.set_rng_seed(3)
    return fn(*args, **kwargs)


def _digits(n, side=28):
    return torch.rand(n, side, side, generator=torch.Generator().manual_seed(0))


def _same(a, b):
    if isinstance(a, tuple):
        return all(_same(x, y) for x, y in zip(a, b))
    return torch.equal(a, b)


# task name: (a tiny config, the trained class, what to call on a model)
TASKS = {
    "vae": (
        VAEConfig(steps=2, batch_size=10, hidden_dim=8, latent_dim=2, num_test=10),
        VAE,
        lambda m: m.reconstruct(_digits(3).round()),
    ),
    "sbn": (
        SBNConfig(steps=2, batch_size=8, layers=(6,), num_test=8, ll_samples=2),
        SigmoidBeliefNet,
        lambda m: _seeded(m.log_likelihood, _digits(3).round().reshape(3, -1), 4),
    ),
    "gated": (
        GatedConfig(steps=2, num_train=40, hidden=3, estimator="score"),
        NeuronDAG,
        lambda m: (m.gate_probs(), _seeded(m.predict, _digits(4, 5)[:, 0], num_samples=3)),
    ),
    "bayes-hypernet": (
        BayesHypernetConfig(
            steps=2, problem="gap1d", width=4, depth=1, num_points=20, num_samples=2
        ),
        BayesianHypernet,
        lambda m: _seeded(m.predict, torch.linspace(-1, 1, 5)[:, None], 3),
    ),
    "air": (
        AIRConfig(
            steps=1,
            batch_size=4,
            num_train=8,
            num_test=4,
            rnn_hidden_size=8,
            window_size=8,
            canvas_size=28,
            max_digits=1,
            eval_every=10,
        ),
        AIR,
        lambda m: m.infer(_digits(2)).z_where,
    ),
    "hyperlstm": (
        HyperLSTMConfig(
            steps=2,
            hidden_size=8,
            hyper_size=4,
            embedding_size=4,
            seq_len=5,
            batch_size=2,
            eval_every=10,
        ),
        CharLanguageModel,
        lambda m: m(torch.arange(12).reshape(6, 2) % m.vocab_size)[0],
    ),
    "reactive": (
        ReactiveConfig(steps=2, batch_size=4, context_size=8, channels=(2, 2), eval_every=10),
        ReactiveQueryNet,
        lambda m: m(_digits(2)),
    ),
    "hypercnn": (
        HyperCNNConfig(steps=2, batch_size=4, embedding_dim=2, eval_every=10),
        HyperCNN,
        lambda m: m(_digits(2)),
    ),
}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_checkpoint_loads_and_computes_what_the_trained_model_does(
    tmp_path, monkeypatch, name
):
    assert set(TASKS) >= set(tasks()) - {"variance"}  # every training task is covered
    config, cls, call = TASKS[name]
    task = tasks()[name]
    trained, build = {}, task.build

    def capture(config, device):
        run = build(config, device)
        trained["model"] = run.module
        return run

    monkeypatch.setattr(task, "build", capture)
    monkeypatch.setattr(task, "finish", lambda run, result, config: None)  # no figures
    fields = dict(config.to_dict(), out=str(tmp_path / "run"), progress=False)
    run_task(type(config)(**fields))
    path = tmp_path / "run" / "last.pt"
    # the last iterate, which is what the trained module holds (AIR also keeps a weight
    # average, which probnets.load gives by default: test_load_reads_a_weight_average)
    model = probnets.load(tmp_path / "run", average=False)  # a run directory: its last.pt
    assert type(model) is cls and not model.training
    trained["model"].eval()
    expected = call(trained["model"])
    assert _same(call(model), expected)
    if name in ("vae", "sbn", "air", "bayes-hypernet"):  # their layout before extra["model"]
        state = torch.load(path, weights_only=True)
        del state["extra"]["model"]
        torch.save(state, tmp_path / "old.pt")
        assert _same(call(cls.load(tmp_path / "old.pt", average=False)), expected)
        assert _same(call(probnets.load(tmp_path / "old.pt", average=False)), expected)
    assert isinstance(cls.load(tmp_path / "run" / "last.pt"), cls)
    other = VAE if cls is not VAE else SigmoidBeliefNet
    if issubclass(other, Loadable):
        with pytest.raises(ValueError, match=f"holds a {cls.__module__}.{cls.__name__}, not"):
            other.load(tmp_path / "run" / "last.pt")


def _train(objective, data, out, steps=2):
    return Trainer(
        objective, data, TrainConfig(steps=steps, lr=0.05, out_dir=str(out), progress=False)
    ).run()


def test_trainer_checkpoint_records_the_model_and_loads_in_float64(tmp_path):
    pyro.set_rng_seed(0)
    vae = VAE(image_size=6, latent_dim=2, hidden_dim=5).double()
    images = _digits(10, 6).round().double()
    _train(
        SVIObjective(vae.model, vae.guide, pyro.infer.Trace_ELBO()),
        BatchSampler(images, batch_size=5, seed=0),
        tmp_path,
    )
    loaded = probnets.load(tmp_path / "last.pt")
    assert loaded.config() == vae.config() and loaded.encoder[0].weight.dtype == torch.float64
    assert torch.equal(loaded.reconstruct(images), vae.reconstruct(images))
    assert torch.equal(VAE.load(tmp_path / "last.pt").decoder[0].bias, vae.decoder[0].bias)


def test_loaded_guide_reads_its_own_parameters_despite_a_stale_param_store(tmp_path):
    pyro.set_rng_seed(0)
    toy = ToyBernoulli(target=0.3)
    _train(
        SVIObjective(toy.model, toy.guide, pyro.infer.Trace_ELBO()),
        iter(lambda: (), 0),
        tmp_path,
        steps=3,
    )
    trained = float(toy.theta_unconstrained.detach())
    pyro.clear_param_store()
    pyro.param("theta", torch.tensor(5.0))  # another model's parameter of the same name
    loaded = ToyBernoulli.load(tmp_path / "last.pt")
    guide = pyro.poutine.trace(loaded.guide).get_trace()
    assert float(guide.nodes["b"]["fn"].logits) == trained != 0.0
    assert float(pyro.param("theta")) == trained


def test_fit_out_dir_checkpoint_loads(tmp_path):
    pyro.set_rng_seed(0)
    x = torch.linspace(-1, 1, 12)[:, None]
    model = BayesianHypernet([1, 4, 1], embedding_dim=2, noise="learned")
    model.fit(x, x.sin(), num_steps=2, out_dir=str(tmp_path), tensorboard=False)
    loaded = probnets.load(tmp_path / "last.pt")
    assert isinstance(loaded, BayesianHypernet)
    assert torch.equal(loaded.noise_scale, model.noise_scale)
    assert _same(_seeded(loaded.predict, x, 3), _seeded(model.predict, x, 3))


def test_nested_records_and_arguments_the_record_cannot_hold(tmp_path):
    pyro.set_rng_seed(0)
    net = NeuronDAG(2, 2, 1, activation=torch.relu, prior=BernoulliPrior(0.2), name="nd")
    x = torch.randn(8, 2)
    _train(
        SVIObjective(net.model, net.guide, pyro.infer.Trace_ELBO()),
        BatchSampler(x, x[:, :1], batch_size=None),
        tmp_path / "a",
    )
    loaded = NeuronDAG.load(tmp_path / "a" / "last.pt")
    assert loaded.activation is torch.relu and loaded.prior.p == 0.2
    assert (
        torch.equal(loaded.target_scale, net.target_scale)
        if net.target_scale is not None
        else loaded.target_scale is None
    )
    assert torch.equal(loaded.gate_probs(), net.gate_probs())

    def blocks():
        return [
            nn.Sequential(nn.Flatten(), nn.LazyLinear(3)),
            nn.Sequential(nn.Flatten(), nn.LazyLinear(2)),
        ]

    dag = LayerDAG(blocks(), (4, 1, 1), likelihood="categorical")
    images, labels = torch.randn(6, 4, 1, 1), torch.tensor([0, 1, 0, 1, 1, 0])
    _train(
        SVIObjective(dag.model, dag.guide, pyro.infer.Trace_ELBO()),
        BatchSampler(images, labels, batch_size=None),
        tmp_path / "b",
    )
    with pytest.raises(ValueError, match=r"LayerDAG.load\(path, blocks=\[...\]\)"):
        LayerDAG.load(tmp_path / "b" / "last.pt")
    loaded = LayerDAG.load(tmp_path / "b" / "last.pt", blocks=blocks())
    assert _same(_seeded(loaded.predict, images, 2), _seeded(dag.predict, images, 2))


class _Unrecorded(nn.Module):
    def __init__(self, width=3):
        super().__init__()
        self.linear = nn.Linear(width, 1)


def test_checkpoints_without_a_usable_record_are_refused_clearly(tmp_path):
    module = _Unrecorded()
    data = BatchSampler(torch.randn(4, 3), batch_size=None)
    _train(LossObjective(lambda x: module.linear(x).pow(2).mean(), module), data, tmp_path)
    path = tmp_path / "last.pt"
    with pytest.raises(ValueError, match=r"records no model class .*load_state_dict"):
        probnets.load(path)
    state = torch.load(path, weights_only=True)
    for name in (
        "os.system",
        "probnets.no_such_module.Model",
        "probnets.loading.missing",
        "probnets.loading.importlib",
        "probnets.models.vae.nn.Linear",
        "probnets.models.vae.PyroModule",
    ):  # defined outside probnets
        state["extra"]["model"] = {"class": name, "config": {}}
        torch.save(state, path)
        with pytest.raises(ValueError, match="neither defined in probnets nor registered"):
            probnets.load(path)
    state["extra"]["model"] = {
        "class": "probnets.models.gated.priors.CostPenalty",
        "config": {"weight": 1.0},
    }
    torch.save(state, path)
    with pytest.raises(ValueError, match="not a torch.nn.Module"):
        probnets.load(path)
    state["extra"]["model"] = {"class": f"{__name__}._Unrecorded", "config": {"width": 3}}
    torch.save(state, path)
    with pytest.raises(ValueError, match="nor registered"):
        probnets.load(path)
    register_model(_Unrecorded)
    loaded = probnets.load(path)
    assert torch.equal(loaded.linear.weight, module.linear.weight)


class _Unconfigured(Loadable, nn.Module):  # no model_config(): nothing to record
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(2))


def test_a_loadable_module_without_model_config_still_trains_and_checkpoints(tmp_path):
    module = _Unconfigured()
    _train(LossObjective(lambda: module.weight.pow(2).sum(), module), iter(lambda: (), 0), tmp_path)
    with pytest.raises(ValueError, match="records no model class"):
        probnets.load(tmp_path / "last.pt")


def test_missing_empty_and_corrupted_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        probnets.load(tmp_path / "none.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty \(0 bytes\)"):
        probnets.load(tmp_path / "empty.pt")
    (tmp_path / "noise.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="truncated or corrupted"):
        probnets.load(tmp_path / "noise.pt")
    torch.save(
        {
            "format": 1,
            "extra": {"model": {"class": "probnets.models.vae.VAE", "config": {"hidden_dim": 4}}},
            "modules": [{"other": torch.zeros(1)}],
        },
        tmp_path / "keys.pt",
    )
    with pytest.raises(ValueError, match="holds no module state with the parameters of"):
        probnets.load(tmp_path / "keys.pt")


def test_load_reads_a_weight_average(tmp_path):
    """A checkpoint holding ``average.<name>`` entries (ExponentialMovingAverage's state)
    loads as the average by default and as the last iterate with ``average=False``."""
    model = VAE(image_size=6, latent_dim=2, hidden_dim=8)
    average = ExponentialMovingAverage(model, decay=0.5)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)  # the last iterate moves away from the average
    state = {
        "format": 1,
        "step": 1,
        "modules": [model.state_dict(), average.state_dict()],
        "extra": {"model": {"class": "probnets.models.vae.VAE", "config": model.model_config()}},
    }
    torch.save(state, tmp_path / "last.pt")
    averaged = probnets.load(tmp_path / "last.pt")
    last = probnets.load(tmp_path / "last.pt", average=False)
    for name, value in model.state_dict().items():
        assert torch.equal(last.state_dict()[name], value)
        stored = average.state_dict().get("average." + name)
        if stored is not None:
            assert torch.equal(averaged.state_dict()[name], stored)
            assert not torch.equal(averaged.state_dict()[name], value)
