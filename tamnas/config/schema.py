"""The config's schema: one dataclass per section, each field carrying its validation rule.

Presets, `--config` files and `--set` overrides all land here; `loading.py`
reads and checks them against these fields, and `tamnas config` lists them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SCORE_NAMES = ("adv_err", "clean_err", "params", "flops", "ood_aupr_err")
FIGURE_FORMATS = ("png", "svg", "pdf")
RATIOS = (0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0)


@dataclass(frozen=True)
class Registered:
    """The choices of a key are the names of a registry (spaces, strategies, objectives, ...).

    config.py sits below every registry, so it does not check these names
    itself: `tamnas.checks.check_names` does, for every config a command or
    `tamnas.load_config` builds.
    """

    kind: str


def _f(default: Any, *, choices: tuple | Registered | None = None, low: float | None = None,
       high: float | None = None, item: Any = None, help: str = "") -> Any:
    """A dataclass field carrying its validation rule.

    For a list, `item` is the type of its elements and `low`/`high`/`choices`
    apply to each element, so a bad element fails here, not epochs later.
    `choices` may name a registry (`Registered`), whose names are checked above config.
    """
    meta = {"choices": choices, "low": low, "high": high, "item": item, "help": help}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    dataset: str = _f("digits", choices=Registered("dataset"),
                      help="digits, fashion-mnist, mnist, cifar10, cifar100, svhn or imagefolder")
    root: str = _f("~/data", help="folder holding the dataset files (imagefolder: the folder with "
                                  "train/ and optionally test/ class folders)")
    download: bool = _f(False, help="let torchvision download missing files")
    resolution: int = _f(32, low=8, high=512,
                         help='images are resized to this many pixels a side')
    val_size: int = _f(5000, low=1, help="training images held out as search validation")
    train_limit: int = _f(0, low=0, help="use only this many training images (0: all)")
    test_limit: int = _f(0, low=0, help="use only this many test images (0: all)")
    batch_size: int = _f(128, low=1,
                         help='training batch size (supernet training, retraining, the gradient '
                              'search)')
    eval_batch_size: int = _f(256, low=1,
                              help='batch size when scoring (no gradients w.r.t. weights; larger '
                                   'is faster)')
    augment: bool = _f(True, help="pad-4 crop + horizontal flip (CIFAR-style)")
    num_workers: int = _f(0, low=0,
                          help='DataLoader worker processes (0: load in the main process)')
    ood: str = _f("auto", choices=("auto", "none", "svhn", "cifar10", "noise", "permuted"),
                  help="out-of-distribution images for OoD AUPR and E2RNAS's OoD loss (auto: the "
                       "dataset's usual choice)")
    ood_size: int = _f(1000, low=1,
                       help='OoD images drawn (split into disjoint training and evaluation halves)')


@dataclass
class SpaceConfig:
    name: str = _f("shufflenet", choices=Registered("space"), help="search space: shufflenet "
                                                                   "(TAM-NAS, paper 004) or "
                                                                   "darts (DARTS cells)")
    width_mult: float = _f(1.0, low=0.05, high=8.0,
                           help='multiplies every channel count of the ShuffleNet space')
    stem_channels: int = _f(24, low=1,
                            help='ShuffleNet: channels of the stem convolution')
    stage_channels: list = _f([48, 96, 192], item=int, low=1,
                              help='ShuffleNet: output channels of each stage')
    stage_layers: list = _f([4, 8, 4], item=int, low=1,
                            help='ShuffleNet: choice layers per stage (the first of each has '
                                 'stride 2)')
    head_channels: int = _f(176, low=1,
                            help='ShuffleNet: channels of the 1x1 head convolution')
    fc_channels: int = _f(1024, low=1,
                          help="ShuffleNet: width of the head's last hidden layer")
    head: str = _f("compact", choices=("compact", "table1"),
                   help="head after the pool: compact SE -> fc_channels, or Table I's SE -> "
                        "head_mid_channels -> fc_channels")
    head_mid_channels: int = _f(920, low=1, help="width of Table I's 'SE 920' row (head = table1)")
    ratio_base: str = _f("half", choices=("half", "full"),
                         help="the channel ratio scales half the block's output width or all of it")
    ratios: list = _f(list(RATIOS), item=float, choices=RATIOS, help="channel ratios offered to "
                                                                     "every layer")
    blocks: list = _f(list(range(22)), item=int, low=0, high=21, help="block ids offered (Table "
                                                                      "XIV of paper 004; `tamnas "
                                                                      "space-info` names them)")
    nonlocal_reduction: int = _f(2, low=1, help="non-local inner channels = channels // this")
    se_reduction: int = _f(4, low=1,
                           help='squeeze-and-excitation hidden width = channels // this')
    weight_sharing: str = _f("family", choices=("none", "projection", "kernel", "family"),
                             help="which candidates of a choice layer share weights in the "
                                  "supernet")
    # DARTS cell space (papers 000-003)
    cells: int = _f(8, low=3,
                    help='DARTS: number of cells')
    init_channels: int = _f(16, low=1,
                            help='DARTS: channels of the first cells (doubled at each reduction)')
    nodes: int = _f(4, low=1, high=8,
                    help='DARTS: intermediate nodes per cell')
    placement: str = _f("standard", choices=("standard", "dsara"),
                        help='DARTS: standard (reductions at 1/3 and 2/3) or dsara (accurate, '
                             'robust and reduction cells)')


@dataclass
class AttackConfig:
    """The attack that scores architectures during search and evaluation."""

    eps: float = _f(8 / 255, low=0.0, high=1.0,
                    help='L-inf budget of the attack that scores archs, in [0, 1] pixel units '
                         '(8/255 = 0.031)')
    steps: int = _f(10, low=0,
                    help='PGD steps of the scoring attack (0: FGSM-free clean scoring only)')
    step_size: float = _f(2 / 255, low=0.0, high=1.0,
                          help='PGD step of the scoring attack, pixel units')
    restarts: int = _f(1, low=1,
                       help='PGD random restarts (the worst case over them counts)')
    loss: str = _f("ce", choices=("ce", "kl"),
                   help="PGD's loss: ce (cross-entropy) or kl (TRADES' KL to the clean prediction)")


@dataclass
class TrainConfig:
    """Supernet training (Algorithm 1 of paper 004) and its objective."""

    objective: str = _f("trades_yopo", choices=Registered("objective"),
                        help="training objective of the supernet and of retraining")
    phase1_epochs: int = _f(500, low=0,
                            help='supernet epochs sampling blocks only, at the widest ratio '
                                 '(paper 004, Alg. 1)')
    phase2_epochs: int = _f(500, low=0,
                            help='supernet epochs sampling blocks and ratios')
    batches_per_epoch: int = _f(0, low=0, help="stop an epoch after this many batches (0: all)")
    lr: float = _f(0.1, low=0.0,
                   help='SGD learning rate of supernet training')
    momentum: float = _f(0.9, low=0.0, high=1.0,
                         help='SGD momentum of supernet training')
    weight_decay: float = _f(5e-4, low=0.0,
                             help='SGD weight decay of supernet training')
    lr_milestones: list = _f([200, 400, 450, 600, 700, 800], item=int, low=0,
                             help='epochs at which the learning rate is multiplied by lr_gamma')
    lr_gamma: float = _f(0.1, low=0.0, high=1.0,
                         help='learning-rate factor at each milestone')
    phase2_lr_reset: bool = _f(True, help="phase 2 starts again at lr (paper: 0.1)")
    params_range_phase1: list = _f([1_823_000, 2_375_000], item=int, low=0,
                                   help='[low, high] params of the subnets phase 1 samples ([0, '
                                        '0]: any)')
    params_range_phase2: list = _f([1_610_000, 2_370_000], item=int, low=0,
                                   help='[low, high] params of the subnets phase 2 samples ([0, '
                                        '0]: any)')
    enlarge_every: int = _f(20, low=1, help="phase 2 adds the next smaller ratio every N epochs")
    block_enlarge_every: int = _f(0, low=0, help="progressive blocks: start with the first two "
                                  "offered blocks, add the next one every N epochs (0: all from "
                                  "the start)")
    warmup_epochs: int = _f(0, low=0, help="lr rises linearly to train.lr over the first N epochs")
    resample_every: str = _f("batch", help="'batch' or a number of epochs")
    sandwich: bool = _f(False, help="each step also trains the widest and the narrowest path of "
                                    "the ratios offered (random blocks), gradients averaged over "
                                    "the three (the sandwich rule); 3x the work per step")
    eps: float = _f(8 / 255, low=0.0, high=1.0,
                    help='L-inf budget of adversarial training, pixel units')
    beta: float = _f(1.0, low=0.0, help="TRADES weight of the KL term (1/lambda)")
    yopo_m: int = _f(5, low=1,
                     help='TRADES-YOPO: outer rounds (full forward/backward passes) per batch')
    yopo_n: int = _f(3, low=1,
                     help='TRADES-YOPO: inner adversary steps through layer one per round')
    yopo_sigma: float = _f(0.007, low=0.0,
                           help='TRADES-YOPO: adversary step size, pixel units')
    first_layer_grad: str = _f("discard", choices=("discard", "hamiltonian"),
                               help="TRADES-YOPO: discard layer one's extra gradient (public "
                                    "code) or keep the Hamiltonian's")
    adversary_bn: str = _f("batch", choices=("eval", "batch"),
                           help="BatchNorm of the supernet-training adversary: running (eval) or "
                                "batch "
                                "statistics; retraining has its own retrain.adversary_bn")
    pgd_steps: int = _f(10, low=1,
                        help='PGD steps of the pgd_at and trades objectives')
    pgd_step_size: float = _f(2 / 255, low=0.0,
                              help='PGD step of the pgd_at and trades objectives, pixel units')
    fgsm_step: float = _f(1.25, low=0.0, help="FGSM-RS step as a multiple of eps")
    precision: str = _f("fp32", choices=("fp32", "bf16"),
                        help="arithmetic of the training passes (supernet training and retraining, "
                             "their adversaries included): bf16 runs them under autocast; weights, "
                             "gradients and the optimiser stay float32, and the attacks that score "
                             "archs (search, validate, report) always run in float32")
    channels_last: bool = _f(True, help="on CUDA, train (and retrain) in the channels-last memory "
                                        "format that cuDNN's fastest convolutions use; ignored on CPU")


@dataclass
class SearchConfig:
    strategy: str = _f("nsga2", choices=Registered("strategy"),
                       help="nsga2 (evolutionary), random (the baseline) or mgda (gradient)")
    pop_size: int = _f(50, low=2,
                       help="NSGA-II population (and random search's first batch)")
    n_offsprings: int = _f(50, low=1,
                           help='children per generation (random search: archs per step)')
    generations: int = _f(20, low=1,
                          help='generations after the initial population')
    p_m: float = _f(0.1, low=0.0, high=1.0,
                    help='per-gene mutation probability (the gene is redrawn)')
    p_c: float = _f(0.9, low=0.0, high=1.0,
                    help='crossover probability (uniform gene crossover)')
    tournament_size: int = _f(2, low=2,
                              help="parents per tournament (2: pymoo's binary NSGA-II tournament)")
    objectives: list = _f(["adv_err", "clean_err", "params"], item=str, choices=SCORE_NAMES,
                          help='what the front minimises: adv_err, clean_err, params, flops, '
                               'ood_aupr_err')
    params_range: list = _f([0, 0], item=int, low=0, help="[low, high]; [0, 0]: the phase-2 "
                                                          "training range")
    bn_images: int = _f(2000, low=1, help="training images used to recalibrate BatchNorm")
    eval_images: int = _f(2000, low=1, help="validation images every candidate is scored on")
    ood: bool = _f(False, help="also score OoD AUPR")
    # MGDA (papers 000-003)
    mgda_variant: str = _f("e2rnas", choices=Registered("mgda_variant"),
                           help="the paper the search follows (benchmarks/RESULTS.md lists each "
                                "variant's settings beside the presets')")
    mgda_epochs: int = _f(50, low=1,
                          help='epochs of the bi-level gradient search')
    mgda_targets: list = _f([], item=float, low=1.0, help="parameter counts")
    mgda_normalization: str = _f("auto", choices=("auto", "none", "l2", "loss", "loss+"),
                                 help="gradient scaling before the min-norm solve; the step "
                                      "follows the combination solved for (auto: the papers' "
                                      "none, raw gradients)")
    mgda_cost_unit: float = _f(-1.0, low=-1.0,
                               help="unit of the params/FLOPs objectives |N - L|, max(N, L): "
                                    "-1 the papers' millions (1e6), 0 divide by the target "
                                    "(scale-free; for spaces of thousands of parameters)")
    mgda_arch_lr: float = _f(3e-4, low=0.0,
                             help='Adam learning rate of the architecture weights alpha')
    mgda_weight_lr: float = _f(0.025, low=0.0,
                               help='SGD learning rate of the network weights in the bi-level '
                                    'search')
    mgda_second_order: bool = _f(False, help="force second order (older switch; see mgda_order)")
    mgda_order: str = _f("auto", choices=("auto", "first", "second"),
                         help="gradient of the weight-dependent objectives w.r.t. alpha: second "
                              "order unrolls one lower-level step (Eq. 9 of papers 000/001); "
                              "auto: the variant's (e2rnas, e2rnas-2obj: second)")
    mgda_lower_adv: str = _f("auto", choices=("auto", "none", "fgsm_rs", "pgd"),
                             help="adversary of the lower level (weight step); auto: the "
                                  "variant's (e2rnas: none, e2rnas-2obj: fgsm_rs, dsara: pgd); "
                                  "fgsm_rs on e2rnas is paper 001's 'w/ AT in LL' ablation")
    mgda_upper_attack: str = _f("auto", choices=("auto", "fgsm_rs", "pgd"),
                                help="adversary of the adv_ce objective; auto: the variant's "
                                     "(dsara: pgd, others fgsm_rs)")
    mgda_eps: float = _f(-1.0, low=-1.0, high=1.0,
                         help="budget of the search's adversaries; -1: the papers' 2/255")
    mgda_pgd_steps: int = _f(0, low=0, help="PGD steps of the search's adversaries; 0: 7 (DSARA)")
    mgda_pgd_step_size: float = _f(-1.0, low=-1.0, high=1.0,
                                   help="PGD step of the search's adversaries; -1: 1/510 (DSARA)")
    mgda_stage1_share: float = _f(-1.0, low=-1.0, high=1.0,
                                  help="dsara: share of mgda_epochs in stage 1; -1: 2/3 (20 of 30)")
    mgda_stage2_arch_lr: float = _f(-1.0, low=-1.0,
                                    help="dsara: arch lr of stage 2; -1: the variant's "
                                         "(dsara: mgda_arch_lr * 5e-5 / 3e-4)")
    mgda_batches_per_epoch: int = _f(0, low=0,
                                     help='stop each bi-level epoch after this many batches (0: '
                                          'all)')
    mgda_finetune_epochs: float = _f(0.0, low=0.0, help="train the derived archs' paths of the "
                                     "searched supernet this many epochs before scoring them")


@dataclass
class RetrainConfig:
    epochs: int = _f(100, low=1,
                     help='epochs of each standalone training (retrain, validate)')
    batches_per_epoch: int = _f(0, low=0,
                                help='stop each retrain epoch after this many batches (0: all)')
    lr: float = _f(0.1, low=0.0,
                   help='SGD learning rate of standalone training')
    momentum: float = _f(0.9, low=0.0, high=1.0,
                         help='SGD momentum of standalone training')
    weight_decay: float = _f(5e-3, low=0.0,
                             help='SGD weight decay of standalone training')
    lr_milestones: list = _f([20, 40, 80], item=int, low=0,
                             help='retrain epochs at which the learning rate is multiplied by '
                                  'lr_gamma')
    lr_gamma: float = _f(0.1, low=0.0, high=1.0,
                         help='learning-rate factor at each retrain milestone')
    adversary_bn: str = _f("eval", choices=("eval", "batch"),
                           help="BatchNorm of the retraining adversary (train.adversary_bn: the "
                                "supernet's)")


@dataclass
class OutputConfig:
    top_k: int = _f(10, low=1,
                    help='front members the LEGO net and the per-layer statistics use')
    top_by: str = _f("adv_err", choices=("adv_err", "weighted", "crowding"),
                     help='how the top-k are chosen: adv_err, weighted (all objectives) or '
                          'crowding')
    formats: list = _f(["png", "svg"], item=str, choices=FIGURE_FORMATS,
                       help='figure file formats')
    eval_eps: list = _f([2 / 255, 4 / 255, 6 / 255, 8 / 255], item=float, low=0.0, high=1.0,
                        help="eps values of tamnas evaluate's grid, pixel units")
    eval_steps: list = _f([10, 30, 50], item=int, low=1,
                          help="PGD step counts of tamnas evaluate's grid")
    tensorboard: bool = _f(False, help="also log training curves, hypervolume and the front to "
                                       "TensorBoard (pip install 'tamnas[tensorboard]')")


@dataclass
class Config:
    preset: str = "custom"
    seed: int = _f(0, low=0)
    data: DataConfig = field(default_factory=DataConfig)
    space: SpaceConfig = field(default_factory=SpaceConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def to_dict(self) -> dict:
        return asdict(self)


SECTIONS = {"data": DataConfig, "space": SpaceConfig, "attack": AttackConfig, "train": TrainConfig,
            "search": SearchConfig, "retrain": RetrainConfig, "output": OutputConfig}
