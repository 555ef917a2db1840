"""Where lrp_lightning differs from Zennit 0.5.1 on purpose: the tests of Zennit's suite that fail for it.

Each entry is a tuple of test-id patterns (``fnmatch`` syntax, where ``[[]`` is a literal ``[``; ids are
relative to Zennit's ``tests`` folder), the reason and, optionally, patterns of ids the entry leaves out.
The suite runner marks matching tests as expected failures with ``strict=True``: a listed test that
starts to pass fails the run, so the list cannot go stale. Keep it short; every entry is a behaviour we
chose, never a missing feature.
"""

DIFFERENCES: list[tuple] = [
    (
        ("test_composites.py::test_composite_*_registered[[]*",),
        "A rule attaches one forward hook per layer, which replaces the layer's output by one autograd node per "
        "call; Zennit also attaches a forward pre-hook that routes every layer's input through an identity "
        "node and a copy. Zennit's test looks for that pre-hook (hooks written for Zennit's protocol get it).",
        # where every rule is a hook written for Zennit's protocol (the suite's cooperative map on the
        # activation-only composites), the pre-hook is there and the test passes; not in the mixed
        # composites, which add built-in rules
        (
            "test_composites.py::test_composite_[!m]*[[-]GuidedBackprop-cooperative_layer_map1*",
            "test_composites.py::test_composite_[!m]*[[-]DeconvNet-cooperative_layer_map1*",
            "test_composites.py::test_composite_[!m]*[[-]BetaSmooth-cooperative_layer_map1*",
        ),
    ),
    (
        ("test_core.py::test_basic_hook_default", "test_core.py::test_basic_hook_custom"),
        "A BasicHook rule keeps no state: the input and output gradient of each call live in that call's "
        "autograd node, not in hook.stored_tensors, so a layer called twice gets each call's own (Zennit's "
        "stored tensors hold the last call's). Subclasses written for Zennit's protocol still get stored_tensors.",
    ),
    (
        ("test_core.py::test_stabilize[[]kwargs[012]-*",),
        "stabilize(-0.0) keeps the sign bit and gives -epsilon (one copysign pass, about 5x faster than "
        "Zennit's three); the relevance is the same, because a denominator of -0 only arises where every "
        "contribution x_i w_i is zero.",
    ),
    (
        ("test_attribution.py::test_occlusion_single[[]*-None-False[]]",),
        "Occlusion without an occlusion_fn follows captum's definition: the mean drop of the target score "
        "over the windows covering an element. With occlusion_fn (Zennit's form) it gives Zennit's numbers.",
    ),
]
