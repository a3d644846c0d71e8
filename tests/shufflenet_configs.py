"""Small ShuffleNetV2 space configurations shared by the space and supernet tests."""

# The full block and ratio sets (the quickstart preset offers only a subset).
FULL = {"space.blocks": list(range(22)),
        "space.ratios": [0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0]}
TINY = {**FULL, "space.stem_channels": 4, "space.stage_channels": [8, 16], "space.stage_layers": [1, 2],
        "space.head_channels": 16, "space.fc_channels": 16, "data.resolution": 8}
CONFIGS = {
    "tiny": TINY,
    # RGB input, width multiplier with rounding, other reductions
    "tiny-rgb-w": {**TINY, "data.dataset": "cifar10", "space.width_mult": 0.75,
                   "space.stage_channels": [10, 14, 18], "space.stage_layers": [2, 1, 2],
                   "space.nonlocal_reduction": 1, "space.se_reduction": 2, "data.resolution": 9},
    # Table I's head (an extra FC in front of fc_channels) and ratios of the full output width
    "tiny-table1-full": {**TINY, "space.head": "table1", "space.head_mid_channels": 12,
                         "space.ratio_base": "full"},
    # subsets of blocks and ratios: gene values index into them
    "tiny-subset": {**TINY, "space.blocks": [21, 5, 0, 9, 14, 18], "space.ratios": [2.0, 0.4, 1.0]},
}
