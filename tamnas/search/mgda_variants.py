"""The MGDA variants (E2RNAS, DSARA, SmoothDARTS, DARTS) and the constants the papers fix.

A variant names the upper-level objectives, DSARA's first stage, whether the
lower level trains on FGSM-RS examples and which SmoothDARTS perturbation of
softmax(alpha) it applies; the bi-level steps read nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

OBJECTIVES = ("val_ce", "adv_ce", "ood_kl", "params", "flops")
COSTS = ("params", "flops")
VAL_ATTACKS = ("fgsm_rs", "pgd")
# Settings the papers fix and SearchConfig does not (yet) carry.
WEIGHT_MOMENTUM = 0.9          # lower-level SGD (DARTS / E2RNAS)
WEIGHT_DECAY = 3e-4
WEIGHT_LR_MIN = 1e-3           # DARTS anneals the weight lr (cosine) down to this over the search
GRAD_CLIP = 5.0                # DARTS clips the weight gradient norm at 5
ARCH_BETAS = (0.5, 0.999)      # upper-level Adam (E2RNAS IV-B2)
ARCH_WEIGHT_DECAY = 1e-3
SDARTS_EPS = (0.03, 0.3)       # perturbation radius, linear over the epochs (paper 003)
SDARTS_ADV_STEPS = 3           # paper 003 uses 7 PGD steps and reports 1 step loses little
FD_RADIUS = 0.01               # DARTS's finite-difference radius, divided by ||grad_w||
HESSIAN_ITERS = 10             # power iterations for the dominant Hessian eigenvalue
FLOPS_SAMPLES = 201            # sampled archs whose median gives the FLOPs/params ratio


@dataclass(frozen=True)
class Variant:
    """What one named variant optimises and how it trains the weights."""

    objectives: tuple[str, ...]              # upper-level objectives (second stage for dsara)
    first_stage: tuple[str, ...] | None = None   # dsara: objectives of the first half
    lower_adv: bool = False                  # lower level on FGSM-RS examples
    perturb: str | None = None               # SmoothDARTS: "rs" or "adv"


VARIANTS = {
    "darts": Variant(("val_ce",)),
    "e2rnas": Variant(("val_ce", "adv_ce", "ood_kl", "params", "flops"), lower_adv=True),
    "dsara": Variant(("val_ce", "adv_ce"), first_stage=("adv_ce",), lower_adv=True),
    "sdarts-rs": Variant(("val_ce",), perturb="rs"),
    "sdarts-adv": Variant(("val_ce",), perturb="adv"),
}

__all__ = ["COSTS", "OBJECTIVES", "VARIANTS", "Variant"]
