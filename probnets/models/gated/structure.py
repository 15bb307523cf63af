"""
Graph bookkeeping for gated DAGs: which edges may exist, in which order nodes can be
evaluated, which nodes reach which, and how an inferred wiring compares with a true one.

Adjacency convention (the DNM's lower-triangular matrix): ``adj[i, j]`` is the edge from node
``j`` into node ``i``; nodes are ordered so that every edge goes from a lower to a higher index.
"""

import torch


def neuron_dag_edges(
    num_inputs: int, num_hidden: int, num_outputs: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Allowed edges of a neuron DAG over nodes ordered inputs, hidden, outputs.

    An edge ``j -> i`` is allowed when ``j < i``, ``i`` is not an input (inputs are clamped to
    the data) and ``j`` is not an output (outputs are read out, never fed on). So there are no
    input->input and no output->output edges; inputs may feed outputs directly.

    :returns: ``(targets, sources)``, two int64 tensors of length ``E`` in row-major order of
        the ``(n, n)`` adjacency, ``n = num_inputs + num_hidden + num_outputs``;
        ``E = H*I + H*(H-1)/2 + O*(I+H)``.
    """
    n = num_inputs + num_hidden + num_outputs
    first_output = num_inputs + num_hidden
    rows, cols = torch.tril_indices(n, n, offset=-1)
    keep = (rows >= num_inputs) & (cols < first_output)
    return rows[keep], cols[keep]


def topological_levels(mask: torch.Tensor) -> torch.Tensor:
    """
    Longest-path depth of every node of a DAG: ``level[i] = 0`` without incoming edges, else
    ``1 + max(level[j] for j -> i)``. Nodes of one level depend only on lower levels, so each
    level is one batched matrix product.

    Computed by vectorized relaxation (one ``(n, n)`` max-reduction per sweep, as many sweeps as
    the depth), not a per-node Python loop.

    :param torch.Tensor mask: bool ``(n, n)``, ``mask[i, j]`` true for an edge ``j -> i``;
        must be strictly lower-triangular.
    :returns: int64 tensor ``(n,)``.
    """
    if mask.dim() != 2 or mask.shape[0] != mask.shape[1]:
        raise ValueError(f"mask: expected a square (n, n) matrix, got shape {tuple(mask.shape)}")
    if torch.triu(mask).any():
        raise ValueError("mask: expected a strictly lower-triangular adjacency (a DAG in order)")
    n = mask.shape[0]
    edges = mask.long()
    level = torch.zeros(n, dtype=torch.long, device=mask.device)
    for _ in range(n):
        # A node without parents stays at 0; one with parents sits above its highest parent.
        new = (edges * (level + 1)).amax(1)
        if torch.equal(new, level):
            break
        level = new
    return level


def reachability(adj: torch.Tensor) -> torch.Tensor:
    """
    Transitive closure of a DAG: ``reach[i, j]`` is true when a directed path of one or more
    edges leads from ``j`` to ``i``. Repeated squaring, ``O(log depth)`` boolean products.

    :param torch.Tensor adj: bool ``(n, n)`` adjacency (``adj[i, j]``: edge ``j -> i``).
    """
    reach = adj.bool()
    for _ in range(max(1, adj.shape[0]).bit_length() + 1):
        step = reach | ((reach.float() @ reach.float()) > 0)
        if torch.equal(step, reach):
            break
        reach = step
    return reach


def structural_hamming_distance(estimated: torch.Tensor, truth: torch.Tensor) -> int:
    """Number of edges present in exactly one of two adjacency matrices (bool, same shape)."""
    if estimated.shape != truth.shape:
        raise ValueError(
            f"estimated: expected the shape of truth {tuple(truth.shape)}, "
            f"got {tuple(estimated.shape)}"
        )
    return int((estimated.bool() ^ truth.bool()).sum())


def auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """
    Area under the ROC curve of ``scores`` for binary ``labels`` (the Mann-Whitney statistic;
    ties count one half). Returns ``nan`` when one class is empty.
    """
    scores = scores.detach().double().flatten()
    labels = labels.bool().flatten()
    pos, neg = scores[labels], scores[~labels]
    if pos.numel() == 0 or neg.numel() == 0:
        return float("nan")
    greater = (pos.unsqueeze(1) > neg.unsqueeze(0)).double().sum()
    ties = (pos.unsqueeze(1) == neg.unsqueeze(0)).double().sum()
    return float((greater + 0.5 * ties) / (pos.numel() * neg.numel()))


def match_hidden_units(
    reference: torch.Tensor, other: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    The assignment of ``other``'s hidden units to ``reference``'s that maximises the total
    absolute correlation of their activations on the same inputs (Hungarian algorithm,
    :func:`scipy.optimize.linear_sum_assignment`). Hidden units of two networks that compute
    the same function are interchangeable, so edge-level comparisons of two wirings are only
    meaningful after such a matching; the absolute value admits sign-flipped units
    (``tanh`` is odd).

    :param torch.Tensor reference: ``(N, H)`` activations.
    :param torch.Tensor other: ``(N, H)`` activations on the same ``N`` inputs.
    :returns: ``perm`` with ``other[:, perm[k]]`` matched to ``reference[:, k]``, and the
        matched absolute correlations ``(H,)``.
    """
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError as error:  # scipy is not a core dependency of probnets
        raise ImportError("match_hidden_units needs scipy: pip install scipy") from error

    if reference.dim() != 2 or reference.shape != other.shape:
        raise ValueError(
            "reference, other: expected two (N, H) tensors of one shape, got "
            f"{tuple(reference.shape)} and {tuple(other.shape)}"
        )

    def standardise(a: torch.Tensor) -> torch.Tensor:
        a = a - a.mean(0)
        return a / a.norm(dim=0).clamp_min(1e-12)

    corr = (standardise(reference).T @ standardise(other)).abs()  # (H_ref, H_other)
    rows, cols = linear_sum_assignment(corr.detach().cpu().numpy(), maximize=True)
    perm = torch.as_tensor(cols[rows.argsort()], device=reference.device)
    return perm, corr[torch.arange(len(perm), device=corr.device), perm]


def permute_hidden(matrix: torch.Tensor, num_inputs: int, perm: torch.Tensor) -> torch.Tensor:
    """Relabel the hidden nodes of an ``(n, n)`` node matrix (inputs, hidden, outputs) so that
    new hidden node ``k`` is old hidden node ``perm[k]``."""
    H = len(perm)
    order = torch.cat(
        [
            torch.arange(num_inputs, device=perm.device),
            num_inputs + perm,
            torch.arange(num_inputs + H, matrix.shape[0], device=perm.device),
        ]
    )
    return matrix[order][:, order]


def path_strength(probs: torch.Tensor, num_inputs: int, num_outputs: int) -> torch.Tensor:
    """
    ``(O, I)`` strength of the strongest directed path from each input to each output: the
    maximum over paths of the product of the edges' inclusion probabilities (a score for
    dependency AUROC; it is 1 for a path of certain edges and 0 without any path).

    :param torch.Tensor probs: ``(n, n)`` edge probabilities, ``[i, j]`` for ``j -> i``,
        strictly lower-triangular.
    """
    n = probs.shape[0]
    strength = torch.zeros(n, num_inputs, dtype=probs.dtype, device=probs.device)
    strength[:num_inputs] = torch.eye(num_inputs, dtype=probs.dtype, device=probs.device)
    for i in range(num_inputs, n):
        strength[i] = (probs[i, :i].unsqueeze(-1) * strength[:i]).amax(0)
    return strength[n - num_outputs :]
