"""Random primitives driven only by an explicit ``torch.Generator``.

``torch.distributions.Beta`` draws from the global RNG (``torch._standard_gamma`` takes no
generator), so Beta variates are built here from Marsaglia-Tsang Gamma sampling, vectorised
over the batch and loop-free: a fixed number of candidates per sample, the first accepted one
kept, so shapes never depend on the data and nothing is read back from the device.
"""

from __future__ import annotations

import math

import torch

from lmix.errors import LmixValueError

__all__ = [
    "sample_beta",
    "sample_beta_lams",
    "sample_gamma",
    "sample_uniform",
    "sample_permutation",
    "sample_pairing",
    "PAIRINGS",
]


def sample_uniform(
    n: int, *, generator: torch.Generator, device: torch.device, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """(n,) samples of U[0, 1), drawn with ``generator`` on its device, returned on ``device``."""
    u = torch.rand(n, generator=generator, device=generator.device, dtype=dtype)
    return u.to(device)


#: Marsaglia-Tsang candidates drawn per Gamma variate. A candidate is rejected with
#: probability at most 0.0482 (concentration 1; less above, and concentrations < 1 are boosted
#: to > 1), so all 16 are rejected with probability < 0.0482 ** 16 < 1e-21 per variate.
GAMMA_CANDIDATES = 16


def _log_gamma(concentration: float, n: int, *, generator: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """(n,) samples of ``log Gamma(concentration, 1)`` on ``generator.device``.

    Marsaglia & Tsang (2000), loop-free: ``GAMMA_CANDIDATES`` candidates per sample are drawn
    at once ((n, 16) normals, then (n, 16) uniforms) and the first accepted one is taken
    (``argmax`` of the acceptance flags), which is exactly the rejection sampler's output. If
    every candidate of a sample is rejected (probability < 1e-21) that sample gets ``d = a - 1/3``,
    close to the mean, instead of an exact draw: no loop, no synchronisation.

    For concentration < 1 the boost ``Gamma(a) = Gamma(a + 1) * U ** (1 / a)`` is applied in log
    space: for tiny concentrations the Gamma variate itself underflows to exactly 0 (about half
    of all draws at a = 0.001 in float64), while its logarithm stays finite.
    """
    device = generator.device
    a = concentration if concentration >= 1.0 else concentration + 1.0
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    shape = (n, GAMMA_CANDIDATES)
    x = torch.randn(shape, generator=generator, device=device, dtype=dtype)
    u = torch.rand(shape, generator=generator, device=device, dtype=dtype)
    # The operations of (1 + c x)^3 and of 0.5 x^2 + d - d v + d log v, in this order (the bits of
    # the draws depend on it), in place where the operand is ours: fewer temporaries on the CPU.
    v = x.mul(c).add_(1.0).pow_(3)
    dv = v.mul(d)
    bound = x.mul(0.5).mul_(x).add_(d).sub_(dv).add_(v.clamp_min(1e-300).log_().mul_(d))
    ok = u.log_().lt_(bound).logical_and_(v > 0)
    first = ok.to(torch.uint8).argmax(dim=1, keepdim=True)  # index of the first accepted candidate
    out = dv.gather(1, first).squeeze(1).masked_fill_(~ok.any(dim=1), d).log_()
    if concentration < 1.0:
        u = torch.rand(n, generator=generator, device=device, dtype=dtype)
        out = out + torch.log(u) / concentration
    return out


def sample_gamma(
    concentration: float, n: int, *, generator: torch.Generator, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """(n,) samples of Gamma(concentration, 1) on ``generator.device``.

    Marsaglia & Tsang (2000), with the ``U ** (1 / a)`` boost for concentration < 1. Very small
    concentrations can give values that underflow to 0 in ``dtype``; ``sample_beta`` works on
    the logarithms instead and is exact there.
    """
    if not concentration > 0:
        raise LmixValueError(f"Gamma concentration must be > 0, got {concentration}")
    return torch.exp(_log_gamma(concentration, n, generator=generator, dtype=dtype))


def sample_beta(
    alpha: float,
    n: int,
    *,
    generator: torch.Generator,
    device: torch.device,
    beta: float | None = None,
) -> torch.Tensor:
    """(n,) float32 samples of Beta(alpha, beta) (beta defaults to alpha), returned on ``device``.

    ``Ga / (Ga + Gb)`` is computed as ``sigmoid(log Ga - log Gb)``, so that it stays exact when
    both Gamma variates underflow (tiny alpha), instead of falling back to a biased guess.
    ``alpha = beta = 1`` is a single ``torch.rand`` draw. Loop-free and synchronisation-free on
    any device (see ``_log_gamma``).
    """
    beta = alpha if beta is None else beta
    if not alpha > 0 or not beta > 0:
        raise LmixValueError(f"Beta parameters must be > 0, got alpha={alpha}, beta={beta}")
    if alpha == 1.0 and beta == 1.0:
        # Beta(1, 1) is U[0, 1]: skip the Gamma machinery on the default path.
        return sample_uniform(n, generator=generator, device=device)
    log_ga = _log_gamma(alpha, n, generator=generator, dtype=torch.float64)
    log_gb = _log_gamma(beta, n, generator=generator, dtype=torch.float64)
    lam = torch.sigmoid(log_ga - log_gb)
    # NaN only if both log-Gammas are -inf (both uniforms exactly 0, probability ~2**-106).
    lam = torch.nan_to_num(lam, nan=0.5)
    return lam.to(device=device, dtype=torch.float32)


def sample_beta_lams(
    alpha: float, mode: str, batch_size: int, *, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """(B,) float32 Beta(alpha, alpha) ``lam``: B independent draws (``mode="sample"``) or one
    draw repeated (``mode="batch"``), returned on ``device``."""
    n = batch_size if mode == "sample" else 1
    return sample_beta(alpha, n, generator=generator, device=device).expand(batch_size).contiguous()


def sample_permutation(n: int, *, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """(n,) int64 random permutation of ``range(n)``, returned on ``device``."""
    return torch.randperm(n, generator=generator, device=generator.device).to(device)


#: Ways to choose each sample's partner (see ``sample_pairing``).
PAIRINGS = ("random", "no_self", "flip", "roll")


def sample_pairing(pairing: str, n: int, *, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """(n,) int64 partner index of every sample of a batch of ``n``, returned on ``device``.

    Args:
        pairing: ``"random"``: a uniform random permutation (about one sample per batch is its
            own partner); ``"no_self"``: a uniform random cyclic permutation, ``sigma = randperm``
            and the partner of ``sigma[i]`` is ``sigma[(i + 1) % n]`` (nobody is its own partner
            for n > 1); ``"flip"``: the partner of ``i`` is ``n - 1 - i`` (timm's pairing, no
            randomness drawn); ``"roll"``: the partner of ``i`` is ``i - 1`` (torchvision v2's
            ``labels.roll(1, 0)``, no randomness drawn).
        n: batch size >= 1.
        generator: source of randomness, drawn on its device.
        device: device of the result.
    """
    if pairing == "random":
        return sample_permutation(n, generator=generator, device=device)
    if pairing == "no_self":
        sigma = torch.randperm(n, generator=generator, device=generator.device).to(device)
        return torch.empty_like(sigma).scatter_(0, sigma, sigma.roll(-1, 0))
    if pairing == "flip":
        return torch.arange(n - 1, -1, -1, device=device)
    if pairing == "roll":
        return torch.arange(-1, n - 1, device=device).remainder_(n)
    raise LmixValueError(f"pairing must be one of {', '.join(map(repr, PAIRINGS))}, got {pairing!r}")
