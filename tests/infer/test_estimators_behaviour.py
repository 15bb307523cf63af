"""
Behaviour of the estimators beyond unbiasedness: relaxation bias vs temperature, learned
control variates and baselines actually train, REBAR keeps z̃'s dependence on the logits,
masked sites contribute nothing, float64 end to end, NVIL's unscaled targets, the
straight-through forward value, and the Trainer's view of ``cv.*`` params.
"""

import math

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch

import probnets.infer.util as infer_util
from probnets.distributions import relaxed as R
from probnets.infer import (
    DisARM_ELBO,
    REBAR_ELBO,
    RELAX_ELBO,
    Relaxed_ELBO,
    ScoreFunction_ELBO,
    VIMCO_ELBO,
    standard_estimators,
)

F64 = dict(dtype=torch.float64)
OBS = torch.tensor([1.0, 0.2], **F64)


def model():
    b = pyro.sample("b", dist.Bernoulli(torch.tensor(0.5, **F64)))
    k = pyro.sample("k", dist.OneHotCategorical(logits=torch.zeros(3, **F64) + b.unsqueeze(-1)))
    mean = torch.stack([3.0 * b, k @ torch.tensor([-1.0, 0.0, 2.0], **F64)], -1)
    pyro.sample("x", dist.Normal(mean, 1.0).to_event(1), obs=OBS)


def guide():
    theta = pyro.param("theta", torch.tensor(0.3, **F64))
    phi = pyro.param("phi", torch.tensor([0.2, -0.1, 0.4], **F64))
    b = pyro.sample("b", dist.Bernoulli(logits=theta))
    pyro.sample("k", dist.OneHotCategorical(logits=phi + b.unsqueeze(-1)))


def exact_grad():
    """∇(−ELBO) w.r.t. (theta, phi) by enumerating b and k."""
    pyro.clear_param_store()
    eye = torch.eye(3, **F64)
    elbo = 0.0
    for b in (0.0, 1.0):
        for j in range(3):
            data = {"b": torch.tensor(b, **F64), "k": eye[j]}
            gt = poutine.trace(poutine.condition(guide, data)).get_trace()
            mt = poutine.trace(poutine.condition(model, data)).get_trace()
            logq = gt.log_prob_sum()
            elbo = elbo + logq.exp() * (mt.log_prob_sum() - logq)
    params = [pyro.param("theta").unconstrained(), pyro.param("phi").unconstrained()]
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(-elbo, params)])


def grads(elbo, calls):
    pyro.clear_param_store()
    out = []
    for _ in range(calls):
        elbo.loss_and_grads(model, guide)
        store = pyro.get_param_store()
        out.append(
            torch.cat([store[n].unconstrained().grad.reshape(-1).clone() for n in ("theta", "phi")])
        )
        for n in store.keys():
            store[n].unconstrained().grad = None
    return torch.stack(out)


def test_relaxed_bias_shrinks_with_temperature():
    pyro.set_rng_seed(0)
    exact = exact_grad()
    elbo = Relaxed_ELBO(temperature=1.0, num_particles=20000, vectorize_particles=True)
    bias = []
    for t in (2.0, 0.5, 0.1):
        elbo.temperature = t  # a plain attribute, as a schedule would set it
        bias.append((grads(elbo, 3).mean(0) - exact).norm().item())
    assert bias[0] > bias[1] > bias[2], bias
    assert bias[2] < 0.25 * bias[0], bias


def _detached_conditional(kind, logits, b, v):
    # the bug of a known PyTorch port: z̃ computed without its dependence on the logits
    if kind == "bernoulli":
        return R.bernoulli_conditional_logistic(logits.detach(), b, v)
    return R.categorical_conditional_gumbel(logits.detach(), b, v)


def test_rebar_keeps_conditional_dependence_on_logits(monkeypatch):
    pyro.set_rng_seed(0)
    exact = exact_grad()

    def zscore(samples):
        return ((samples.mean(0) - exact) / (samples.std(0) / samples.shape[0] ** 0.5)).abs().max()

    ours = zscore(grads(REBAR_ELBO(num_particles=2048, vectorize_particles=True), 15))
    assert ours < 4.5
    monkeypatch.setattr(infer_util, "_conditional", _detached_conditional)
    detached = zscore(grads(REBAR_ELBO(num_particles=2048, vectorize_particles=True), 15))
    assert detached > 8.0, "the detached-z̃ variant should be detectably biased"


@pytest.mark.parametrize(
    "make_elbo, cv_names",
    [
        (
            lambda: ScoreFunction_ELBO(baseline="nvil", num_particles=4, vectorize_particles=True),
            ["cv.nvil.b$$$0.weight", "cv.nvil.k$$$2.bias"],
        ),
        (
            lambda: REBAR_ELBO(num_particles=4, vectorize_particles=True),
            [
                "cv.rebar.eta.theta",
                "cv.rebar.eta.phi",
                "cv.rebar.log_temperature.b",
                "cv.rebar.log_temperature.k",
            ],
        ),
        (
            lambda: RELAX_ELBO(num_particles=4, vectorize_particles=True),
            [
                "cv.relax.surrogate.b$$$0.weight",
                "cv.relax.surrogate.k$$$2.weight",
                "cv.relax.eta.b",
                "cv.relax.log_temperature.k",
            ],
        ),
    ],
    ids=["nvil", "rebar", "relax"],
)
def test_learned_params_get_gradients_and_change(make_elbo, cv_names):
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    elbo = make_elbo()
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), loss=elbo)
    svi.step()  # creates every lazily registered param
    store = pyro.get_param_store()
    before = {n: store[n].detach().clone() for n in cv_names}
    elbo.loss_and_grads(model, guide)
    for n in cv_names:
        g = store[n].unconstrained().grad
        assert g is not None and g.abs().sum() > 0, n
        assert g.dtype == torch.float64, n
    for n in store.keys():
        store[n].unconstrained().grad = None
    for _ in range(3):
        svi.step()
    for n in cv_names:
        assert not torch.equal(before[n], store[n].detach()), n


def test_rebar_temperature_and_eta_descend_the_variance():
    # Adam on (η, log λ) alone lowers the gradient variance (measured before and after
    # with the same random numbers, so the comparison is not drowned in sampling noise)
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    elbo = REBAR_ELBO(num_particles=64, vectorize_particles=True)
    elbo.loss_and_grads(model, guide)
    store = pyro.get_param_store()
    cv = [store[n].unconstrained() for n in store.keys() if n.startswith("cv.")]
    opt = torch.optim.Adam(cv, lr=0.05)

    def variance():
        pyro.set_rng_seed(123)
        out = []
        for _ in range(20):
            for n in store.keys():
                store[n].unconstrained().grad = None
            elbo.loss_and_grads(model, guide)
            out.append(
                torch.cat(
                    [store[n].unconstrained().grad.reshape(-1).clone() for n in ("theta", "phi")]
                )
            )
        return torch.stack(out).var(0).sum().item()

    v0 = variance()
    pyro.set_rng_seed(1)
    for _ in range(100):
        for n in store.keys():
            store[n].unconstrained().grad = None
        elbo.loss_and_grads(model, guide)
        opt.step()
    assert variance() < 0.9 * v0


def masked_model():
    with poutine.mask(mask=False):
        pyro.sample("m", dist.Bernoulli(torch.tensor(0.3, **F64)))
    with pyro.plate("p", 3):
        pyro.sample(
            "z", dist.Bernoulli(torch.tensor(0.6, **F64)).mask(torch.tensor([True, False, True]))
        )
    pyro.sample("x", dist.Normal(torch.tensor(0.0, **F64), 1.0), obs=torch.tensor(0.5, **F64))


def masked_guide():
    lm = pyro.param("lm", torch.tensor(0.1, **F64))
    lz = pyro.param("lz", torch.tensor([0.2, 0.3, -0.4], **F64))
    with poutine.mask(mask=False):
        pyro.sample("m", dist.Bernoulli(logits=lm))
    with pyro.plate("p", 3), poutine.mask(mask=torch.tensor([True, False, True])):
        pyro.sample("z", dist.Bernoulli(logits=lz))


MASK_ELBOS = [
    lambda: ScoreFunction_ELBO(baseline="nvil", num_particles=3, vectorize_particles=True),
    lambda: Relaxed_ELBO(temperature=0.5, num_particles=3, vectorize_particles=True),
    lambda: REBAR_ELBO(num_particles=3, vectorize_particles=True),
    lambda: RELAX_ELBO(num_particles=3, vectorize_particles=True),
    lambda: DisARM_ELBO(num_particles=3, vectorize_particles=True),
    lambda: VIMCO_ELBO(num_particles=3, vectorize_particles=True),
]


@pytest.mark.parametrize(
    "make_elbo", MASK_ELBOS, ids=["score", "relaxed", "rebar", "relax", "disarm", "vimco"]
)
def test_masked_sites_contribute_nothing(make_elbo):
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    elbo = make_elbo()
    loss = elbo.loss_and_grads(masked_model, masked_guide)
    # only the unmasked z elements and x are scored
    store = pyro.get_param_store()
    gm = store["lm"].unconstrained().grad
    assert gm is None or gm.abs().max() == 0
    gz = store["lz"].unconstrained().grad
    assert gz[1] == 0
    assert gz.dtype == torch.float64
    assert isinstance(loss, float)


def test_masked_site_loss_excludes_its_log_density():
    def unmasked_only_model():
        pyro.sample("x", dist.Normal(torch.tensor(0.0, **F64), 1.0), obs=torch.tensor(0.5, **F64))

    def guide_m():
        lm = pyro.param("lm", torch.tensor(1.5, **F64))
        with poutine.mask(mask=False):
            pyro.sample("m", dist.Bernoulli(logits=lm))

    def model_m():
        with poutine.mask(mask=False):
            pyro.sample("m", dist.Bernoulli(torch.tensor(0.01, **F64)))
        unmasked_only_model()

    expected = -dist.Normal(0.0, 1.0).log_prob(torch.tensor(0.5)).item()
    for elbo in (ScoreFunction_ELBO(), Relaxed_ELBO(0.5), REBAR_ELBO(), DisARM_ELBO()):
        pyro.clear_param_store()
        assert elbo.loss(model_m, guide_m) == pytest.approx(expected)


def test_nvil_regresses_unscaled_per_datapoint_costs():
    """Pyro issue #555: the baseline target must not grow with N/B."""
    data = torch.ones(10, **F64)

    def make(n_total):
        def m(x):
            with pyro.plate("data", n_total, subsample=torch.arange(10)):
                z = pyro.sample("z", dist.Bernoulli(torch.tensor(0.5, **F64)))
                pyro.sample("x", dist.Normal(2 * z, 1.0), obs=x)

        def g(x):
            lz = pyro.param("lz", torch.zeros(10, **F64))
            with pyro.plate("data", n_total, subsample=torch.arange(10)):
                pyro.sample("z", dist.Bernoulli(logits=lz))

        return m, g

    means = []
    for n_total in (10, 10000):
        pyro.set_rng_seed(0)
        pyro.clear_param_store()
        elbo = ScoreFunction_ELBO(baseline="nvil")
        m, g = make(n_total)
        for _ in range(5):
            elbo.loss_and_grads(m, g, data)
        means.append(elbo.baselines.moments["z"].mean)
    assert means[0] == pytest.approx(means[1], rel=1e-9)


def test_straight_through_forward_is_hard_and_backward_relaxed():
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    elbo = Relaxed_ELBO(
        temperature=0.5, straight_through=True, num_particles=16, vectorize_particles=True
    )
    elbo.loss_and_grads(model, guide)
    _, gt = elbo._get_trace(model, guide, (), {})
    b = gt.nodes["b"]["value"]
    assert set(b.unique().tolist()) <= {0.0, 1.0}
    k = gt.nodes["k"]["value"]
    assert torch.equal(k.sum(-1), torch.ones_like(k.sum(-1)))
    assert set(k.unique().tolist()) <= {0.0, 1.0}
    assert pyro.param("theta").unconstrained().grad.abs() > 0


@pytest.mark.parametrize(
    "make_elbo",
    [
        lambda: ScoreFunction_ELBO(baseline="decaying_avg"),
        lambda: Relaxed_ELBO(temperature=0.5),
        lambda: REBAR_ELBO(),
        lambda: RELAX_ELBO(),
        lambda: DisARM_ELBO(),
        lambda: VIMCO_ELBO(num_particles=2, vectorize_particles=True),
    ],
    ids=["score", "relaxed", "rebar", "relax", "disarm", "vimco"],
)
def test_float64_end_to_end_with_trainer(make_elbo, request):
    """Every estimator trains through probnets' Trainer in float64 (and sees cv.* params)."""
    from probnets.train import SVIObjective, TrainConfig, Trainer

    def data():
        while True:
            yield ()

    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    elbo = make_elbo()
    # DisARM is Bernoulli-only: route the one-hot site to the score function
    infer = {"k": {"estimator": "score"}} if "disarm" in request.node.name else {}
    routed = poutine.infer_config(guide, lambda site: infer.get(site["name"], {}))
    trainer = Trainer(
        SVIObjective(model, routed, elbo),
        data(),
        TrainConfig(steps=3, lr=0.01, param_groups={"cv.*": {"lr": 0.01}}, progress=False),
    )
    result = trainer.run()
    assert len(result.history) >= 1
    for name in pyro.get_param_store().keys():
        assert pyro.param(name).dtype == torch.float64, name


def test_relax_without_rebar_term_is_a_pure_surrogate():
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    elbo = RELAX_ELBO(rebar_cv=False, num_particles=8, vectorize_particles=True)
    elbo.loss_and_grads(model, guide)
    names = set(pyro.get_param_store().keys())
    assert not any(n.startswith("cv.relax.eta") for n in names)
    # zero-initialized output layer
    w = pyro.get_param_store()["cv.relax.surrogate.b$$$2.weight"].unconstrained()
    assert w.grad is not None and w.grad.abs().sum() > 0


@pytest.mark.parametrize("temperature", [0.5, 0.2])
def test_rebar_fixed_holds_the_requested_temperature(temperature):
    # "rebar-fixed" is REBAR with eta = 1 and lambda held fixed at the table's temperature,
    # "rebar" starts there and learns both.
    fixed = standard_estimators(["rebar-fixed"], temperature=temperature)["rebar-fixed"]()
    learned = standard_estimators(["rebar"], temperature=temperature)["rebar"]()
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), loss=fixed)
    for _ in range(3):
        svi.step()
    store = pyro.get_param_store()
    for site in ("b", "k"):
        log_t = store[f"cv.rebar.log_temperature.{site}"].detach()
        assert log_t.item() == pytest.approx(math.log(temperature), abs=1e-12), site
        assert store[f"cv.rebar.eta.{'theta' if site == 'b' else 'phi'}"].item() == 1.0
    pyro.clear_param_store()
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), loss=learned)
    for _ in range(3):
        svi.step()
    # Adam's first steps move log(lambda) by about the learning rate from where it started.
    moved = store["cv.rebar.log_temperature.b"].item() - math.log(temperature)
    assert 0.01 < abs(moved) < 0.2
