"""Function tags that Ember reads as settings (``ember:`` keys). Pure: names and values.

``ember:network``: ``outbound`` gives the function's environments outbound network
(a user-mode stack; host loopback and instance metadata stay unreachable); ``none`` or
no tag: the sandbox's own loopback only. Any other value means ``none`` too.
"""

from __future__ import annotations

from collections.abc import Mapping

NETWORK_TAG = "ember:network"
NETWORK_OUTBOUND = "outbound"
NETWORK_NONE = "none"
NETWORK_VALUES = (NETWORK_NONE, NETWORK_OUTBOUND)


def wants_outbound_network(tags: Mapping[str, str]) -> bool:
    return tags.get(NETWORK_TAG) == NETWORK_OUTBOUND
