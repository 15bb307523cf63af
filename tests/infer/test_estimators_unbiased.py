"""
Unbiasedness of every unbiased estimator against the exact gradient, computed here by
enumerating all discrete configurations of a small model: global Bernoulli ``a``, a
categorical ``c`` whose probabilities depend on ``a``, a one-hot ``d`` depending on ``c``,
and a subsampled plate of local Bernoulli ``z_i`` depending on ``a``. The test is a
z-test of the mean of M independent estimates (each an average over K vectorized
particles) against the exact value, using the sample standard deviation.
"""

import itertools

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch

from probnets.infer import (
    DisARM_ELBO,
    REBAR_ELBO,
    RELAX_ELBO,
    ScoreFunction_ELBO,
)

N = 5
IDX = torch.tensor([1, 3])
X = torch.tensor([0.3, -1.2, 2.0, 0.7, 1.5], dtype=torch.float64)
Z_MAX = 4.5  # two-sided per-component threshold (tens of components per test)


def make_model(one_hot_c, estimators=None):
    estimators = estimators or {}
    f64 = dict(dtype=torch.float64)

    def infer(name):
        return {"estimator": estimators[name]} if name in estimators else {}

    def model(x, idx):
        mu = pyro.param("mu", torch.tensor([0.5, -0.5, 1.0], **f64))
        probs_c = torch.tensor([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]], **f64)
        w_d = torch.tensor([[1.0, 0.0, -1.0], [0.0, 0.5, 0.0], [-1.0, 0.0, 1.0]], **f64)
        a = pyro.sample("a", dist.Bernoulli(torch.tensor(0.4, **f64)))
        if one_hot_c:
            probs_c_a = a.unsqueeze(-1) * probs_c[1] + (1 - a.unsqueeze(-1)) * probs_c[0]
            c = pyro.sample("c", dist.OneHotCategorical(probs=probs_c_a))
            d_logits = c @ w_d
        else:
            c = pyro.sample("c", dist.Categorical(probs_c[a.long()]))
            d_logits = w_d[c]
        d = pyro.sample("d", dist.OneHotCategorical(logits=d_logits))
        with pyro.plate("data", N, subsample=idx):
            z = pyro.sample("z", dist.Bernoulli(logits=0.3 - a))
            mean = z + d @ mu + a
            pyro.sample("x", dist.Normal(mean, 1.0), obs=x[idx])

    def guide(x, idx):
        la = pyro.param("la", torch.tensor(0.2, **f64))
        lc = pyro.param("lc", torch.tensor([[0.1, -0.3, 0.4], [0.5, 0.0, -0.2]], **f64))
        ld = pyro.param(
            "ld", torch.tensor([[0.3, 0.1, -0.1], [0.0, -0.4, 0.2], [0.6, 0.0, 0.1]], **f64)
        )
        lz = pyro.param("lz", torch.tensor([0.1, -0.2, 0.3, 0.0, 0.4], **f64))
        a = pyro.sample("a", dist.Bernoulli(logits=la), infer=infer("a"))
        lc_a = a.unsqueeze(-1) * lc[1] + (1 - a.unsqueeze(-1)) * lc[0]
        if one_hot_c:
            c = pyro.sample("c", dist.OneHotCategorical(logits=lc_a), infer=infer("c"))
            logits_d = c @ ld
        else:
            c = pyro.sample("c", dist.Categorical(logits=lc_a), infer=infer("c"))
            logits_d = ld[c]
        pyro.sample("d", dist.OneHotCategorical(logits=logits_d), infer=infer("d"))
        with pyro.plate("data", N, subsample=idx):
            pyro.sample("z", dist.Bernoulli(logits=lz[idx] + 0.5 * a), infer=infer("z"))

    return model, guide


PARAMS = ("mu", "la", "lc", "ld", "lz")


_EXACT = {}


def exact_gradient(model, guide, one_hot_c):
    """∇ELBO by enumerating a, c, d and z (the subsample is fixed, so its scale N/B is exact)."""
    if one_hot_c not in _EXACT:
        _EXACT[one_hot_c] = _exact_gradient(model, guide, one_hot_c)
    return _EXACT[one_hot_c]


def _exact_gradient(model, guide, one_hot_c):
    eye = torch.eye(3, dtype=torch.float64)
    cs = [eye[k] for k in range(3)] if one_hot_c else [torch.tensor(k) for k in range(3)]
    elbo = 0.0
    pyro.clear_param_store()
    for a, c, d, z in itertools.product(
        (0.0, 1.0), cs, [eye[k] for k in range(3)], itertools.product((0.0, 1.0), repeat=2)
    ):
        data = {
            "a": torch.tensor(a, dtype=torch.float64),
            "c": c,
            "d": d,
            "z": torch.tensor(z, dtype=torch.float64),
        }
        gt = poutine.trace(poutine.condition(guide, data)).get_trace(X, IDX)
        mt = poutine.trace(poutine.condition(model, data)).get_trace(X, IDX)
        # q weights the configuration unscaled; the ELBO terms carry the plate scale N/B
        weight = sum(
            site["fn"].log_prob(site["value"]).sum()
            for site in gt.nodes.values()
            if site["type"] == "sample" and site["name"] != "data"
        )
        elbo = elbo + weight.exp() * (mt.log_prob_sum() - gt.log_prob_sum())
    params = [pyro.param(n).unconstrained() for n in PARAMS]
    grads = torch.autograd.grad(-elbo, params)
    return torch.cat([g.reshape(-1) for g in grads])


def sample_gradients(elbo, model, guide, num_calls):
    pyro.clear_param_store()
    out = []
    for _ in range(num_calls):
        elbo.loss_and_grads(model, guide, X, IDX)
        store = pyro.get_param_store()
        grads = []
        for n in PARAMS:
            p = store[n].unconstrained()
            grads.append(p.grad.reshape(-1).clone())
            p.grad = None
        for n in store.keys():
            store[n].unconstrained().grad = None
        out.append(torch.cat(grads))
    return torch.stack(out)


def z_scores(samples, exact):
    mean = samples.mean(0)
    se = samples.std(0) / samples.shape[0] ** 0.5
    return (mean - exact) / se.clamp(min=1e-12)


K = 256
KV = dict(num_particles=K, vectorize_particles=True)
CASES = [
    ("score", lambda: ScoreFunction_ELBO(num_particles=K, vectorize_particles=True), False, {}),
    ("score-decaying", lambda: ScoreFunction_ELBO(baseline="decaying_avg", **KV), False, {}),
    ("score-nvil", lambda: ScoreFunction_ELBO(baseline="nvil", **KV), False, {}),
    ("score-loo", lambda: ScoreFunction_ELBO(baseline="loo", **KV), False, {}),
    ("disarm+score", lambda: DisARM_ELBO(**KV), False, {"c": "score", "d": "score"}),
    ("rebar", lambda: REBAR_ELBO(num_particles=K, vectorize_particles=True), True, {}),
    (
        "mixed",
        lambda: ScoreFunction_ELBO(num_particles=K, vectorize_particles=True),
        True,
        {"a": "relax", "c": "relax", "z": "disarm"},
    ),
]


@pytest.mark.parametrize("name,make_elbo,one_hot_c,estimators", CASES, ids=[c[0] for c in CASES])
def test_mean_gradient_matches_exact(name, make_elbo, one_hot_c, estimators):
    pyro.set_rng_seed(0)
    model, guide = make_model(one_hot_c, estimators)
    exact = exact_gradient(model, guide, one_hot_c)
    samples = sample_gradients(make_elbo(), model, guide, num_calls=20)
    assert samples.dtype == torch.float64
    z = z_scores(samples, exact)
    assert z.abs().max() < Z_MAX, (name, z, exact, samples.mean(0))


# a reparameterized site downstream of a discrete one (as AIR's z_where after z_pres): the
# relaxed passes of REBAR/RELAX redraw it with shared random numbers, DisARM with fresh ones


def cont_model():
    a = pyro.sample("a", dist.Bernoulli(torch.tensor(0.4, dtype=torch.float64)))
    w = pyro.sample("w", dist.Normal(a, 1.0))
    pyro.sample("x", dist.Normal(w, 0.5), obs=torch.tensor(0.7, dtype=torch.float64))


def cont_guide():
    la = pyro.param("la", torch.tensor(0.2, dtype=torch.float64))
    m = pyro.param("m", torch.tensor([-0.3, 0.8], dtype=torch.float64))
    s = pyro.param(
        "s", torch.tensor(0.6, dtype=torch.float64), constraint=dist.constraints.positive
    )
    a = pyro.sample("a", dist.Bernoulli(logits=la))
    pyro.sample("w", dist.Normal(m[0] + (m[1] - m[0]) * a, s))


def cont_exact():
    pyro.clear_param_store()
    cont_guide()
    la, m, s = pyro.param("la"), pyro.param("m"), pyro.param("s")

    def expected_log_normal(mean, sd, loc, scale):  # E_{w~N(mean, sd)} log N(w | loc, scale)
        scale = torch.as_tensor(scale, dtype=torch.float64)
        return -0.5 * torch.log(2 * torch.pi * scale**2) - ((mean - loc) ** 2 + sd**2) / (
            2 * scale**2
        )

    elbo = 0.0
    for a in (0.0, 1.0):
        q_a = torch.sigmoid(la) if a else torch.sigmoid(-la)
        p_a = 0.4 if a else 0.6
        mean = m[int(a)]
        inner = (
            expected_log_normal(mean, s, a, 1.0)
            + expected_log_normal(mean, s, 0.7, 0.5)
            + 0.5 * torch.log(2 * torch.pi * torch.e * s**2)
        )
        log_p_a = torch.log(torch.tensor(p_a, dtype=torch.float64))
        elbo = elbo + q_a * (log_p_a - torch.log(q_a) + inner)
    params = [pyro.param(n).unconstrained() for n in ("la", "m", "s")]
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(-elbo, params)])


@pytest.mark.parametrize(
    "make_elbo",
    [
        lambda: REBAR_ELBO(num_particles=K, vectorize_particles=True),
        lambda: RELAX_ELBO(num_particles=K, vectorize_particles=True),
        lambda: DisARM_ELBO(num_particles=K, vectorize_particles=True),
    ],
    ids=["rebar", "relax", "disarm"],
)
def test_continuous_site_downstream_of_discrete(make_elbo):
    pyro.set_rng_seed(0)
    exact = cont_exact()
    elbo = make_elbo()
    pyro.clear_param_store()
    out = []
    for _ in range(20):
        elbo.loss_and_grads(cont_model, cont_guide)
        store = pyro.get_param_store()
        out.append(
            torch.cat([store[n].unconstrained().grad.reshape(-1).clone() for n in ("la", "m", "s")])
        )
        for n in store.keys():
            store[n].unconstrained().grad = None
    z = z_scores(torch.stack(out), exact)
    assert z.abs().max() < Z_MAX, (z, exact)


# random minibatches: every pass of one estimate (REBAR's relaxed passes, DisARM's
# antithetic pass) must score the first pass's minibatch


@pytest.mark.parametrize(
    "make_elbo, runs",
    [
        (lambda: REBAR_ELBO(), 3),
        (lambda: RELAX_ELBO(), 3),
        (lambda: DisARM_ELBO(), 2),
    ],
    ids=["rebar", "relax", "disarm"],
)
def test_random_subsampling_is_shared_by_all_passes(make_elbo, runs):
    seen = []
    data = torch.randn(1000, dtype=torch.float64)

    def model():
        with pyro.plate("data", 1000, subsample_size=5) as idx:
            seen.append(idx.clone())
            z = pyro.sample("z", dist.Bernoulli(torch.tensor(0.5, dtype=torch.float64)))
            pyro.sample("x", dist.Normal(2 * z, 1.0), obs=data[idx])

    def guide():
        lz = pyro.param("lz", torch.zeros(1000, dtype=torch.float64))
        with pyro.plate("data", 1000, subsample_size=5) as idx:
            pyro.sample("z", dist.Bernoulli(logits=lz[idx]))

    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    elbo = make_elbo()
    elbo.loss_and_grads(model, guide)  # guesses max_plate_nesting first
    for name in pyro.get_param_store().keys():
        pyro.get_param_store()[name].unconstrained().grad = None
    seen.clear()
    elbo.loss_and_grads(model, guide)
    assert len(seen) == runs
    assert all(torch.equal(idx, seen[0]) for idx in seen)
    # the gradient lands on the minibatch's own parameters only
    grad = pyro.param("lz").unconstrained().grad
    assert (grad != 0).nonzero().flatten().tolist() == sorted(seen[0].tolist())
