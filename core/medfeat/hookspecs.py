"""The hooks medfeat plugins implement.

A plugin is a module named by an entry point in the ``medfeat`` group. It implements any of the hooks
below with the ``@medfeat.hookimpl`` marker. Each ``medfeat_register_*`` hook receives a ``register``
callback bound to one component kind::

    from medfeat import hookimpl

    @hookimpl
    def medfeat_register_backbones(register):
        register("my-backbone", make_my_backbone, config=MyBackboneConfig, summary="What it computes.")

``register(name, factory, *, config=None, summary="", aliases=(), accepts=())``:

* ``name`` — the registered name users write in YAML (lower-case, ``-`` separated). Names and
  aliases of one kind share one namespace: a name or alias already taken (by the built-ins, which
  register first, or by another plugin) is refused and reported by ``medfeat plugins``;
* ``factory(config, context)`` — builds the component; ``config`` is an instance of ``config``
  (a pydantic model) validated from the YAML section, ``context`` a :class:`medfeat.context.RunContext`
  (device, seed, progress, out_dir, timings);
* ``config`` — the pydantic model of the YAML section (without ``name``); ``None`` for no options;
* ``summary`` — one line for ``medfeat components``;
* ``aliases`` — other names for the component (each obeys the naming rule above);
* ``accepts`` — deformable optimisers only: the pipeline sections they consume besides their own.

A factory that raises anything but a :class:`medfeat.errors.MedfeatError` is reported as a fault
of its plugin (naming the plugin and the component); raise a ``MedfeatError`` subclass with a
``remedy`` for problems the user can fix.

Names starting with ``medfeat_`` in a plugin module are reserved for the hooks below: a function
named like a hook that is none (``medfeat_register_backbone``), or a hook not marked
``@hookimpl``, is reported by ``medfeat plugins``.

Keep the plugin module light: import torch and model code inside the factory, so that discovering
plugins (``medfeat plugins``) stays instant. The built-in components use this same mechanism
(entry point ``builtins = "medfeat.builtins"``).

What each kind's factory returns is described by the protocols in :mod:`medfeat.components`.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("medfeat")


@hookspec
def medfeat_register_backbones(register):
    """Register feature extractors: image -> multi-level feature maps with geometry (:class:`~medfeat.components.Backbone`)."""


@hookspec
def medfeat_register_feature_transforms(register):
    """Register transforms of feature maps: normalisation, level fusion, joint PCA (:class:`~medfeat.components.FeatureTransform`)."""


@hookspec
def medfeat_register_similarities(register):
    """Register similarity measures (losses, lower is better) between images or feature maps (:class:`~medfeat.components.Similarity`)."""


@hookspec
def medfeat_register_regularisers(register):
    """Register penalties on displacement fields, e.g. diffusion or bending energy (:class:`~medfeat.components.Regulariser`)."""


@hookspec
def medfeat_register_matchers(register):
    """Register correspondence matchers: query points of A -> matching points of B (:class:`~medfeat.components.Matcher`).

    Used by the ``matcher`` section of ``correspondence`` pipelines.
    """


@hookspec
def medfeat_register_aligners(register):
    """Register pre-alignments: fixed/moving -> a rigid or affine world transform (:class:`~medfeat.components.Aligner`).

    Used, in order, by the ``prealignment`` list of ``registration`` pipelines, before the
    deformable optimiser; the written transform includes them.
    """


@hookspec
def medfeat_register_optimisers(register):
    """Register deformable optimisers: fixed/moving -> displacement field (:class:`~medfeat.components.DeformableOptimiser`).

    Used by the ``optimiser`` section of ``registration`` pipelines, together with the pipeline's
    ``similarity`` and ``regulariser`` sections when the optimiser takes them (see ``accepts`` in
    :func:`medfeat_register_backbones`'s ``register``).
    """


@hookspec
def medfeat_register_segmentation_heads(register):
    """Register segmentation models trained on images or on frozen features (:class:`~medfeat.components.SegmentationHead`)."""


@hookspec
def medfeat_register_pretrainers(register):
    """Register pretraining schemes that learn backbone weights, e.g. diffusion pretraining (:class:`~medfeat.components.Pretrainer`)."""


@hookspec
def medfeat_register_coordinate_providers(register):
    """Register body-part coordinate providers: image -> dense anatomical coordinates (:class:`~medfeat.components.CoordinateProvider`)."""


@hookspec
def medfeat_register_datasets(register):
    """Register dataset adapters: a root folder -> cases (pairs, landmarks, labels) (:class:`~medfeat.components.Dataset`)."""


@hookspec
def medfeat_register_commands(cli):
    """Add sub-commands to the ``medfeat`` CLI.

    ``cli`` is an :class:`argparse._SubParsersAction`; add a parser and set ``func=callable(args)``
    with ``parser.set_defaults(func=...)``. The callable returns an exit code.
    """
