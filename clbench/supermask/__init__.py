"""The supermask library: everything tensor-level that SupSup-style methods need, and nothing
about runs, files or the CLI. Importing the package imports no torch; its modules do, except
``rules`` and ``sizes``.

* ``bits``: bit packing and :class:`~clbench.supermask.bits.PackedMaskStore`, the finished masks.
* ``layers``: mask rules, straight-through estimators, masked linear/conv layers, the one
  per-task BatchNorm (:class:`~clbench.supermask.layers.TaskBatchNorm2d`).
* ``supernet``: :class:`~clbench.supermask.supernet.SupermaskNet`, fixed weights, scores, modes.
* ``nets``: the architectures (MLPs, the one GEM ResNet-18, ResNet-50), ``build_model``,
  ``model_from_state``.
* ``inference``: the objective (H, G), One-Shot and Binary task inference, NNs' score bank.
* ``predict``: answering a checkpoint's evaluation requests with stored or inferred masks.
* ``sizes``: byte formulas and mask statistics (torch-free).
* ``rules``: torch-free choices and refusals shared by the methods' declarations.
* ``hopfield``: HopSupSup's per-unit masks, Storkey memory, recovery and unit-mask One-Shot.
"""
