"""Events as plain JSON data: :func:`event_to_dict`, :func:`event_from_dict`, :func:`event_key`.

Every ``dp_accounting.DpEvent`` (dp-accounting's own and the two distributed events of
:mod:`dp.events`) serialises to a JSON-compatible dictionary ``{"@type": class name,
field: value, ...}``. Loading is restricted to a whitelist of event classes, so that
reading a file never imports arbitrary code.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import attr
import dp_accounting
import numpy as np
from dp_accounting import dp_event

from dp.events import DistributedDiscreteGaussianDpEvent, DistributedSkellamDpEvent
from secagg.errors import InvalidParameterError

__all__ = ["TYPE_KEY", "event_from_dict", "event_key", "event_to_dict"]

TYPE_KEY = "@type"


def _event_classes() -> dict[str, type[dp_accounting.DpEvent]]:
    classes: dict[str, type[dp_accounting.DpEvent]] = {}
    for name in dir(dp_event):
        obj = getattr(dp_event, name)
        if isinstance(obj, type) and issubclass(obj, dp_event.DpEvent):
            classes[name] = obj
    for cls in (DistributedDiscreteGaussianDpEvent, DistributedSkellamDpEvent):
        classes[cls.__name__] = cls
    return classes


_EVENT_CLASSES = _event_classes()


def _value_to_json(value: Any) -> Any:
    if isinstance(value, dp_accounting.DpEvent):
        return event_to_dict(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        if not math.isfinite(f):
            raise InvalidParameterError(f"cannot serialise the non-finite value {f!r}")
        return f
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence):
        return [_value_to_json(v) for v in value]
    raise InvalidParameterError(f"cannot serialise a field of type {type(value).__name__}")


def event_to_dict(event: dp_accounting.DpEvent) -> dict[str, object]:
    """JSON-compatible dictionary of an event: ``{"@type": class name, field: value, ...}``.

    Nested events become nested dictionaries; sequences become lists.

    Raises:
        InvalidParameterError: the event is not one of the known event classes or has a
            non-finite or unserialisable field.
    """
    cls = type(event)
    if _EVENT_CLASSES.get(cls.__name__) is not cls:
        raise InvalidParameterError(f"cannot serialise the unknown event class {cls.__qualname__}")
    out: dict[str, Any] = {TYPE_KEY: cls.__name__}
    for field in attr.fields(cls):
        out[field.name] = _value_to_json(getattr(event, field.name))
    return out


def _value_from_json(value: Any) -> Any:
    if isinstance(value, Mapping):
        return event_from_dict(value)
    if isinstance(value, list):
        return [_value_from_json(v) for v in value]
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    raise InvalidParameterError(f"unexpected value in a serialised event: {value!r}")


def event_from_dict(data: Mapping[str, object]) -> dp_accounting.DpEvent:
    """Inverse of :func:`event_to_dict`; only known event classes are instantiated.

    Raises:
        InvalidParameterError: unknown class, missing or unexpected fields.
    """
    if not isinstance(data, Mapping):
        raise InvalidParameterError("a serialised event must be a JSON object")
    name = data.get(TYPE_KEY)
    cls = _EVENT_CLASSES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise InvalidParameterError(f"unknown event type {name!r}")
    fields = {f.name: f for f in attr.fields(cls)}
    extra = set(data) - set(fields) - {TYPE_KEY}
    if extra:
        raise InvalidParameterError(f"unexpected fields {sorted(extra)} for {name}")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key != TYPE_KEY:
            kwargs[key] = _value_from_json(value)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise InvalidParameterError(f"cannot build {name}: {exc}") from exc


def event_key(event: dp_accounting.DpEvent) -> str:
    """Canonical string of an event (sorted-key JSON), usable as a dictionary key."""
    return json.dumps(event_to_dict(event), sort_keys=True, separators=(",", ":"))
