"""Random primitives driven only by an explicit ``torch.Generator``.

``torch.distributions.Beta`` draws from the global RNG (``torch._standard_gamma`` takes no
generator), so Beta variates are built here from Marsaglia-Tsang Gamma sampling, vectorised
over the batch: the only loop is over rejection *rounds*, never over samples.
"""

from __future__ import annotations

import math

import torch

__all__ = ["sample_beta", "sample_gamma", "sample_uniform", "sample_permutation", "gen_device"]


def gen_device(generator: torch.Generator | None, fallback: torch.device) -> torch.device:
    """Device on which random numbers must be drawn for ``generator``."""
    return generator.device if generator is not None else fallback


def sample_uniform(
    n: int, *, generator: torch.Generator, device: torch.device, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """(n,) samples of U[0, 1), drawn with ``generator`` on its device, returned on ``device``."""
    u = torch.rand(n, generator=generator, device=generator.device, dtype=dtype)
    return u.to(device)


def sample_gamma(
    concentration: float, n: int, *, generator: torch.Generator, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """(n,) samples of Gamma(concentration, 1) on ``generator.device``.

    Marsaglia & Tsang (2000). For concentration < 1 the boost
    ``Gamma(a) = Gamma(a + 1) * U ** (1 / a)`` is used, computed in log space so that tiny
    concentrations do not underflow to exactly 0.
    """
    if not concentration > 0:
        raise ValueError(f"Gamma concentration must be > 0, got {concentration}")
    device = generator.device
    a = concentration if concentration >= 1.0 else concentration + 1.0
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    out = torch.empty(n, dtype=dtype, device=device)
    todo = torch.ones(n, dtype=torch.bool, device=device)
    remaining = n
    while remaining > 0:
        # Over-draw so that one round almost always suffices (acceptance >= 0.95 for a >= 1).
        m = remaining + 8 + remaining // 8
        x = torch.randn(m, generator=generator, device=device, dtype=dtype)
        u = torch.rand(m, generator=generator, device=device, dtype=dtype)
        v = (1.0 + c * x) ** 3
        ok = (v > 0) & (torch.log(u) < 0.5 * x * x + d - d * v + d * torch.log(v.clamp_min(1e-300)))
        accepted = (d * v)[ok]
        take = min(int(accepted.numel()), remaining)
        idx = todo.nonzero().flatten()[:take]
        out[idx] = accepted[:take]
        todo[idx] = False
        remaining -= take
    if concentration < 1.0:
        u = torch.rand(n, generator=generator, device=device, dtype=dtype)
        out = torch.exp(torch.log(out) + torch.log(u) / concentration)
    return out


def sample_beta(
    alpha: float,
    n: int,
    *,
    generator: torch.Generator,
    device: torch.device,
    beta: float | None = None,
) -> torch.Tensor:
    """(n,) float32 samples of Beta(alpha, beta) (beta defaults to alpha), returned on ``device``."""
    beta = alpha if beta is None else beta
    if alpha == 1.0 and beta == 1.0:
        # Beta(1, 1) is U[0, 1]: skip the Gamma machinery on the default path.
        return sample_uniform(n, generator=generator, device=device)
    ga = sample_gamma(alpha, n, generator=generator)
    gb = sample_gamma(beta, n, generator=generator)
    lam = ga / (ga + gb)
    # Both Gammas can underflow to 0 for tiny alpha; the limit distribution is Bernoulli(1/2).
    lam = torch.where(torch.isfinite(lam), lam, (ga >= gb).to(lam.dtype))
    return lam.to(device=device, dtype=torch.float32)


def sample_permutation(n: int, *, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """(n,) int64 random permutation of ``range(n)``, returned on ``device``."""
    return torch.randperm(n, generator=generator, device=generator.device).to(device)
