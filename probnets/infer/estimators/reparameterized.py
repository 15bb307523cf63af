from probnets.infer.estimators.base import SiteEstimator, SiteRecord, SiteTerm


class Reparameterized(SiteEstimator):
    r"""
    The pathwise (reparameterization) gradient of a site whose distribution has ``rsample``
    (Kingma & Welling 2014; Rezende et al. 2014): Pyro draws :math:`z = g_\theta(\epsilon)`
    and the surrogate is the site's own :math:`-\log q_\theta(z)`, differentiated through
    both its value and its parameters; terms downstream are differentiated through the
    value. Every reparameterizable guide site uses it unless its ``infer`` dict names
    another estimator.
    """

    name = "reparameterized"

    def accepts(self, fn):
        return bool(getattr(fn, "has_rsample", False))

    def sample(self, msg, guide_pass):
        return SiteRecord(msg["name"], self)

    def surrogate(self, context, site, record, log_prob):
        return SiteTerm(surrogate=-(log_prob * site["scale"]).sum())
