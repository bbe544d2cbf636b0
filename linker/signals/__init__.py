"""The registry of evidence signals (see :mod:`linker.signals.base`).

Importing this package registers the built-in signals: the identity signals
(:mod:`linker.signals.identity`) then the behaviour signals (:mod:`linker.signals.behaviour`).
"""

from linker.signals import behaviour, identity
from linker.signals.base import (
    EvidenceInputs,
    GroupTerms,
    Signal,
    SignalGroup,
    SignalValues,
    all_signals,
    default_weights,
    group,
    groups,
    register_group,
    register_signal,
    registered_signal,
    signal,
    unregister_signal,
    values_from_columns,
    values_to_columns,
)

# Identity first: its group scores first and its signals' reasons come first.
for _group, _built_in in (
    (identity.IdentityGroup(), identity.BUILT_IN),
    (behaviour.BehaviourGroup(), behaviour.BUILT_IN),
):
    register_group(_group)
    for _signal in _built_in:
        register_signal(_signal, built_in=True)

__all__ = [
    "EvidenceInputs",
    "GroupTerms",
    "Signal",
    "SignalGroup",
    "SignalValues",
    "all_signals",
    "default_weights",
    "group",
    "groups",
    "register_group",
    "register_signal",
    "registered_signal",
    "signal",
    "unregister_signal",
    "values_from_columns",
    "values_to_columns",
]
