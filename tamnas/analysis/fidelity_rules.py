"""The rules that turn validate's figures into words: readable or not, trusted or not.

Every verdict sentence is built here from the figures it prints, by the rules
docs/trust.md states: readability from the reachable tau alone (with one
training seed, only a "no" the images alone force, else "unknown"), trust
from the inherited-vs-standalone tau and its interval. No other figure (such
as the spread of the standalone errors) enters a verdict; it is printed for
the reader.
"""

from __future__ import annotations

import math

import numpy as np

from tamnas.analysis.noise import READABLE_TAU

OBJECTIVES = {"clean": "clean error", "adv": "adversarial error"}
READABLE_CEILING = READABLE_TAU   # reachable tau from which a ranking can be read
PARTLY_READABLE_CEILING = 0.4     # below it, it cannot be read at all
TRUSTED_TAU = 0.5                 # an inherited tau from which the front's order is trusted
CHANCE_MARGIN = 0.05   # a net within this of chance error (1 - 1/classes) learned nothing useful

TRUST_WORDS = {"yes": "the front's order can be trusted",
               "roughly": "the front's order is at least a rough guide",
               "no": "the front's order cannot be trusted",
               "undecided": "too few archs to tell whether the front's order can be trusted "
                            "(use more --archs)",
               "unknown": "the front's order cannot be checked"}


def readability(reachable: float, seed_noise_known: bool = True) -> str:
    """"yes", "partly", "no" or "unknown": could any predictor rank these archs?

    `reachable` is the highest tau a noise-free predictor reaches against the
    standalone reference. With one training seed it leaves out training noise, so it
    is only an upper bound: then a bound below PARTLY_READABLE_CEILING still says
    "no", anything else "unknown" (never "yes": the larger noise is unmeasured).
    """
    if not np.isfinite(reachable) or reachable < PARTLY_READABLE_CEILING:
        return "no"
    if not seed_noise_known:
        return "unknown"
    return "yes" if reachable >= READABLE_CEILING else "partly"


def trust(tau: float, tau_ci, readable: str) -> str:
    """Does the front's order follow the standalone order? One of TRUST_WORDS' keys.

    Interval above 0: "yes" when tau >= TRUSTED_TAU, else "roughly" (noise can only
    hide agreement, so this holds whatever the seeds). Otherwise, unless the ranking is
    readable ("yes"), a low tau cannot be blamed on the supernet (one seed leaves the
    training noise unmeasured; a partly readable ranking lets even a perfect predictor
    fall short): "unknown". On a readable ranking, an interval below TRUSTED_TAU: "no";
    otherwise "undecided".
    """
    if readable == "no" or not np.isfinite(tau):
        return "unknown"
    lo, hi = tau_ci
    if lo is not None and np.isfinite(lo) and lo > 0:
        return "yes" if tau >= TRUSTED_TAU else "roughly"
    if readable != "yes":
        return "unknown"
    if hi is not None and np.isfinite(hi) and hi < TRUSTED_TAU:
        return "no"
    return "undecided"


def _num(v, fmt: str = ".2f") -> str:
    return "n/a" if v is None or not np.isfinite(v) else format(float(v), fmt)


def _ci(ci) -> str:
    lo, hi = ci if ci is not None else (None, None)
    return f"[{_num(lo)}, {_num(hi)}]"


def seeds_text(k) -> str:
    """"3 seeds", "1 seed", "no number of seeds" (inf) or "an unknown number of seeds"."""
    if k is None or (isinstance(k, float) and math.isnan(k)):
        return "an unknown number of seeds"
    if not np.isfinite(k):
        return "no number of seeds"
    return f"{int(k)} seed{'s' if int(k) != 1 else ''}"


def _seeds_interval(ci) -> str:
    lo, hi = ci if ci is not None else (None, None)
    def one(k):
        return "n/a" if k is None or (isinstance(k, float) and math.isnan(k)) else (
            "never" if not np.isfinite(k) else str(int(k)))
    return f"[{one(lo)}, {one(hi)}]"


def readability_clause(s: dict) -> str:
    """What the seeds and images allow, with the rule's threshold, from printed figures."""
    if s["seeds"] >= 2:
        figures = (f"two trainings agree with tau {_num(s['ceiling_seeds'])} "
                   f"{_ci(s.get('ceiling_seeds_ci'))} and two image samples with "
                   f"{_num(s['ceiling_images'])}, so a tau against the mean of {s['seeds']} "
                   f"seeds can reach {_num(s['ceiling_for_mean'])} "
                   f"{_ci(s.get('ceiling_for_mean_ci'))}")
        words = {"yes": f"the ranking can be read (reachable tau >= {READABLE_CEILING:.2f})",
                 "partly": f"the ranking can only partly be read (reachable tau "
                           f"{PARTLY_READABLE_CEILING:.2f}-{READABLE_CEILING:.2f})",
                 "no": f"the ranking cannot be read (reachable tau < "
                       f"{PARTLY_READABLE_CEILING:.2f})"}[s["readable"]]
        k = s.get("seeds_needed")
        if k is not None and not (isinstance(k, float) and math.isnan(k)) and not np.isfinite(k):
            if not s["ceiling_for_mean"] > 0:
                need = ("the trainings agree no better than chance, so no number of seeds is "
                        "projected to make it readable (the archs differ less than training "
                        "noise: spread them, or train longer)")
            else:
                need = (f"no number of seeds reaches {READABLE_CEILING:.2f} on these images "
                        "(their noise alone keeps it below: use more evaluation images)")
        else:
            need = (f"a readable ranking needs {seeds_text(k)} "
                    f"{_seeds_interval(s.get('seeds_needed_ci'))}")
        return f"{words}: {figures}; {need}"
    bound = (f"the evaluation images alone allow a tau of at most {_num(s['ceiling_for_mean'])}")
    if s["readable"] == "no":
        return (f"the ranking cannot be read (reachable tau < {PARTLY_READABLE_CEILING:.2f} even "
                f"before training noise): {bound}; use more evaluation images")
    return (f"whether the ranking can be read is unknown: one training per arch leaves the "
            f"training noise, usually the larger part, unmeasured ({bound}); --seeds 2 or more "
            "measures it and how many seeds a readable ranking needs")


def objective_verdict(name: str, s: dict) -> str:
    """One plain sentence on one objective (clean or adversarial error)."""
    label = OBJECTIVES[name].capitalize()
    if s.get("untrained"):
        return (f"{label}: the ranking cannot be judged: {s['untrained']} of "
                f"{s['n_archs']} standalone nets are within {100 * CHANCE_MARGIN:.0f} points of "
                f"chance ({100 * s['chance_err']:.0f}% clean error), so they learned nothing to "
                "rank; train them longer (retrain.epochs) and validate again.")
    tau, ci = s["kendall_tau"], s["kendall_tau_ci"]
    tau_txt = f"inherited vs standalone tau {_num(tau)} {_ci(ci)}"
    noise_kind = ("images paired, mean of the seeds" if s["seeds"] >= 2
                  else "images paired; training noise not included")
    spread = (f"standalone errors spread {_num(100 * s['standalone_std'], '.1f')} points (std) "
              f"against {_num(100 * s['standalone_noise'], '.1f')} points of noise per score "
              f"({noise_kind}); inherited errors {100 * s['mean_gap']:+.1f} points against "
              "standalone")
    head = f"{label}: {readability_clause(s)}."
    if s["readable"] == "no":
        return f"{head} No tau against these scores says anything about the supernet ({tau_txt}; " \
               f"{spread})."
    if s["trust"] == "unknown":
        trust_txt = ("a tau without an interval above 0 cannot be blamed on the supernet while "
                     + ("the training noise is unmeasured" if s["readable"] == "unknown"
                        else "the ranking is only partly readable"))
    else:
        trust_txt = TRUST_WORDS[s["trust"]]
        if s["trust"] == "roughly" and s["readable"] == "unknown":
            trust_txt += " (training noise may hide more agreement)"
    size = ""
    ptau, pci = s.get("partial_tau", math.nan), s.get("partial_tau_ci", [None, None])
    if ptau is not None and np.isfinite(ptau) and pci[0] is not None:
        pc = s.get("partial_ceiling")
        size = (f" With size held fixed, tau {_num(ptau)} {_ci(pci)}"
                + (f" (two seeds: {_num(pc)})" if pc is not None and np.isfinite(pc) else "")
                + ": how well it orders archs of similar size.")
    return f"{head} {tau_txt.capitalize()}: {trust_txt} ({spread}).{size}"


def overall_verdict(result: dict) -> str:
    """The headline: can the ranking be read, and how far can the front be trusted."""
    levels = {name: result[name]["readable"] for name in OBJECTIVES}
    trusts = {name: result[name]["trust"] for name in OBJECTIVES}
    untrained = result["clean"].get("untrained", 0)
    if untrained:
        return (f"The ranking cannot be judged: {untrained} of {result['clean']['n_archs']} "
                f"standalone nets are within {100 * CHANCE_MARGIN:.0f} points of chance clean "
                "error, so the standalone side of the comparison learned nothing; train them "
                "longer (retrain.epochs) before judging the front.")
    if all(v == "no" for v in levels.values()):
        return ("The ranking cannot be read: the standalone scores of these archs differ by about "
                "their own noise, so neither this supernet nor any other predictor can be checked "
                "here. Spread the archs' scores (harder data, a wider space) or shrink the noise "
                "(more seeds, more evaluation images) before trusting or distrusting the front.")
    words = {"yes": "trusted", "roughly": "rough guide", "no": "not trusted",
             "undecided": "undecided", "unknown": "unknown"}
    parts = [f"{label}: {words[trusts[name]]}" for name, label in OBJECTIVES.items()]
    trusted = [n for n in OBJECTIVES if trusts[n] == "yes"]
    if len(trusted) == len(OBJECTIVES):
        head = ("The front can be trusted in order: inherited scores rank archs as standalone "
                "training does")
    elif trusted:
        head = "The front can be trusted in part"
    elif any(t == "roughly" for t in trusts.values()):
        head = ("The front is a rough guide only: inherited scores agree with standalone "
                "training weakly")
    elif any(t == "undecided" for t in trusts.values()):
        head = ("Too few archs to judge the front: the 95% intervals of tau span both no "
                "agreement and good agreement; run with more --archs (20 or more)")
    elif any(v == "unknown" for v in levels.values()) and "no" not in trusts.values():
        head = ("Cannot tell yet: with one training seed per arch the training noise is "
                "unmeasured, so whether the ranking can be read is unknown and a low tau cannot "
                "be blamed on the supernet; validate again with --seeds 2 or more")
    else:
        head = ("The front cannot be trusted: inherited scores do not rank archs as standalone "
                "training does")
    gaps = " and ".join(f"{100 * result[n]['mean_gap']:+.1f} ({'clean' if n == 'clean' else 'adv'})"
                        for n in OBJECTIVES)
    return (f"{head} ({'; '.join(parts)}). Inherited minus standalone error: {gaps} points on "
            "average.")


__all__ = ["CHANCE_MARGIN", "OBJECTIVES", "PARTLY_READABLE_CEILING", "READABLE_CEILING",
           "TRUSTED_TAU", "TRUST_WORDS", "objective_verdict", "overall_verdict", "readability",
           "readability_clause", "seeds_text", "trust"]
