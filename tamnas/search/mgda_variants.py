"""The MGDA variants (E2RNAS, DSARA, SmoothDARTS, DARTS) as their papers state them.

A variant names the upper-level objectives, DSARA's first stage, the
lower-level adversary, the upper-level adversary and its budget, first or
second order, the normalisation of the min-norm solve and the SmoothDARTS
perturbation of softmax(alpha); the bi-level steps read nothing else. Each
setting is the paper's; SearchConfig keys (`search.mgda_*`, "auto" or -1 by
default) override one setting at a time, so the papers' ablations stay
reachable (e.g. `search.mgda_lower_adv = "fgsm_rs"` is E2RNAS "w/ AT in LL",
Table VI of paper 001). `resolve` joins the two.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

OBJECTIVES = ("val_ce", "adv_ce", "ood_kl", "params", "flops")
COSTS = ("params", "flops")
VAL_ATTACKS = ("fgsm_rs", "pgd")
LOWER_ATTACKS = ("none", "fgsm_rs", "pgd")
ORDERS = ("first", "second")
PARAMS_FORMS = ("distance", "hinge")
# Settings every variant shares (DARTS / E2RNAS IV-B2 / DSARA 5.3).
WEIGHT_MOMENTUM = 0.9          # lower-level SGD
WEIGHT_DECAY = 3e-4
WEIGHT_LR_MIN = 1e-3           # DARTS anneals the weight lr (cosine) down to this over the search
GRAD_CLIP = 5.0                # DARTS clips the weight gradient norm at 5
ARCH_BETAS = (0.5, 0.999)      # upper-level Adam
ARCH_WEIGHT_DECAY = 1e-3
SDARTS_EPS = (0.03, 0.3)       # perturbation radius, linear over the epochs (paper 003)
SDARTS_ADV_STEPS = 7           # paper 003: 7-step PGD on softmax(alpha), step 2 eps / 7
FD_RADIUS = 0.01               # DARTS's finite-difference radius, divided by ||grad_w||
HESSIAN_ITERS = 10             # power iterations for the dominant Hessian eigenvalue
FLOPS_SAMPLES = 201            # sampled archs whose median gives the FLOPs/params ratio
PAPER_EPS = 2 / 255            # the search-time budget of papers 000-002

COST_UNIT = 1e6   # papers 000/001 state L (and F) in millions: Psi = max(N, L), |N - L| in M


@dataclass(frozen=True)
class Variant:
    """What one named variant optimises and how it trains the weights (module docstring)."""

    objectives: tuple[str, ...]              # upper-level objectives (second stage for dsara)
    first_stage: tuple[str, ...] | None = None   # dsara: objectives of the first stage
    stage1_share: float = 0.5                # dsara: share of the epochs in stage 1 (20 of 30)
    stage2_arch_lr_ratio: float = 1.0        # dsara: stage-2 arch lr / stage-1 (5e-5 / 3e-4)
    lower_adv: str = "none"                  # lower-level adversary: none, fgsm_rs, pgd
    upper_attack: str = "fgsm_rs"            # the adversary of adv_ce: fgsm_rs or pgd
    eps: float = PAPER_EPS                   # budget of both adversaries
    fgsm_step: float = 1.25                  # FGSM-RS step / eps (Wong et al., as papers 000/001)
    pgd_steps: int = 7                       # DSARA: PGD-7 ...
    pgd_step: float = 1 / 510                # ... with step 1/510 at eps 2/255
    order: str = "first"                     # "second": Eq. 9 of papers 000/001
    normalization: str = "none"              # the papers solve on raw gradients
    params_form: str = "distance"            # |E[N] - L| (001, Eq. 5) or max(E[N], L) (000, Eq. 6)
    cost_unit: float = COST_UNIT             # costs in millions, as the papers; 0: divide by the target
    weight_lr_min: float = WEIGHT_LR_MIN     # DSARA anneals the weight lr to zero
    perturb: str | None = None               # SmoothDARTS: "rs" or "adv"


VARIANTS = {
    # DARTS, first order, as SmoothDARTS builds on it.
    "darts": Variant(("val_ce",)),
    # Paper 001 (journal): lower level L_tr + L_ood (Eq. 7-8, IV-E1), five upper objectives,
    # FGSM (Wong et al.'s random start, 1.25 eps) at 2/255 (IV-B2), second order (Eq. 9).
    "e2rnas": Variant(("val_ce", "adv_ce", "ood_kl", "params", "flops"), order="second"),
    # Paper 000 (workshop): FGSM-RS at 2/255, step 1.25 eps, in the lower level; two objectives,
    # val CE and Psi = max(N, L) (Eq. 6), closed-form weight (Eq. 11), second order (Eq. 9).
    "e2rnas-2obj": Variant(("val_ce", "params"), lower_adv="fgsm_rs", order="second",
                           params_form="hinge"),
    # Paper 002 (5.3): PGD-7 (step 1/510, eps 2/255) in both levels; 20 epochs of adversarial
    # val loss alone, then 10 of MGDA over natural + adversarial; arch lr 3e-4 then 5e-5;
    # weight lr annealed to zero; first order (Alg. 2 steps alpha on the current weights).
    "dsara": Variant(("val_ce", "adv_ce"), first_stage=("adv_ce",), stage1_share=2 / 3,
                     stage2_arch_lr_ratio=5e-5 / 3e-4, lower_adv="pgd", upper_attack="pgd",
                     weight_lr_min=0.0),
    # Paper 003: perturbed softmax(alpha) in the lower level, clipped to [0, 1], rows renormalised.
    "sdarts-rs": Variant(("val_ce",), perturb="rs"),
    "sdarts-adv": Variant(("val_ce",), perturb="adv"),
}


def resolve(name: str, search_cfg) -> Variant:
    """The variant `name` with the search.mgda_* overrides of `search_cfg` applied."""
    if name not in VARIANTS:
        raise ValueError(f"search.mgda_variant: unknown variant {name!r}; choose one of "
                         f"{', '.join(VARIANTS)}")
    v, s = VARIANTS[name], search_cfg
    changes: dict = {}
    if s.mgda_lower_adv != "auto":
        changes["lower_adv"] = s.mgda_lower_adv
    if s.mgda_upper_attack != "auto":
        changes["upper_attack"] = s.mgda_upper_attack
    if s.mgda_eps >= 0:
        changes["eps"] = float(s.mgda_eps)
    if s.mgda_pgd_steps > 0:
        changes["pgd_steps"] = int(s.mgda_pgd_steps)
    if s.mgda_pgd_step_size >= 0:
        changes["pgd_step"] = float(s.mgda_pgd_step_size)
    if s.mgda_order != "auto":
        changes["order"] = s.mgda_order
    if s.mgda_second_order:                   # the older switch: forces second order
        changes["order"] = "second"
    if s.mgda_normalization != "auto":
        changes["normalization"] = s.mgda_normalization
    if s.mgda_cost_unit >= 0:
        changes["cost_unit"] = float(s.mgda_cost_unit)
    if s.mgda_stage1_share >= 0:
        changes["stage1_share"] = float(s.mgda_stage1_share)
    if s.mgda_stage2_arch_lr >= 0:
        changes["stage2_arch_lr_ratio"] = (float(s.mgda_stage2_arch_lr) / s.mgda_arch_lr
                                           if s.mgda_arch_lr > 0 else 1.0)
    return replace(v, **changes)


__all__ = ["COSTS", "COST_UNIT", "LOWER_ATTACKS", "OBJECTIVES", "ORDERS", "PAPER_EPS", "VAL_ATTACKS",
           "VARIANTS", "Variant", "resolve"]
