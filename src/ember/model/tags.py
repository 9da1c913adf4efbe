"""Function tags that Ember reads as settings (``ember:`` keys). Pure: names and values.

``ember:network``: ``outbound`` gives the function's environments outbound network
(a user-mode stack; host loopback and instance metadata stay unreachable); ``none`` or
no tag: the sandbox's own loopback only. Other values are refused (CreateFunction,
TagResource).
"""

from __future__ import annotations

from collections.abc import Mapping

from ember.errors import InvalidParameterValueException

NETWORK_TAG = "ember:network"
NETWORK_OUTBOUND = "outbound"
NETWORK_NONE = "none"
NETWORK_VALUES = (NETWORK_NONE, NETWORK_OUTBOUND)


def wants_outbound_network(tags: Mapping[str, str]) -> bool:
    return tags.get(NETWORK_TAG) == NETWORK_OUTBOUND


def check_setting_tags(tags: Mapping[str, str]) -> None:
    """Ember's own setting tags take only the values Ember understands."""
    value = tags.get(NETWORK_TAG)
    if value is not None and value not in NETWORK_VALUES:
        raise InvalidParameterValueException(
            f"The tag {NETWORK_TAG} must be one of {', '.join(NETWORK_VALUES)}, not '{value}'."
        )
