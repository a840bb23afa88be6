"""The offline learners, one module each, behind one interface (controller/update.py's `Update`).

`policy.learner` picks one. Each module puts its settings at the top (an `Options` dataclass,
filled from `policy.learner_options`) and its update as named steps. Every learner trains the
same accident critics (CSC) and exports a policy the gate takes as it takes the default actor,
so any of them can run alone or gated, and the suite compares them on the same data.
"""

from __future__ import annotations

import importlib

# name -> module:class; imported when asked for (the learners import the update, which imports the model).
LEARNERS = {
    "csc": "safecritic.controller.update:Update",
    "bc": "safecritic.controller.learners.bc:BC",
    "bc_safe": "safecritic.controller.learners.bc:BCSafe",
    "bcq": "safecritic.controller.learners.bcq:BCQ",
    "bcq_lag": "safecritic.controller.learners.bcq:BCQLag",
    "bear": "safecritic.controller.learners.bear:BEAR",
    "bear_lag": "safecritic.controller.learners.bear:BEARLag",
    "brac": "safecritic.controller.learners.brac:BRAC",
    "mopo": "safecritic.controller.learners.model_based:MOPO",
    "combo": "safecritic.controller.learners.model_based:COMBO",
    "armor": "safecritic.controller.learners.armor:ARMOR",
    "cpq": "safecritic.controller.learners.cpq:CPQ",
    "coptidice": "safecritic.controller.learners.coptidice:COptiDICE",
}


def learner_class(name: str) -> type:
    """The Update subclass of the learner `name` (policy.learner)."""
    if name not in LEARNERS:
        from safecritic.configs.errors import ConfigError

        raise ConfigError(f"policy.learner is {name!r}; the learners are {', '.join(LEARNERS)}")
    module, cls = LEARNERS[name].split(":")
    return getattr(importlib.import_module(module), cls)
