"""``ReusedFieldsSerializer``: fields built once per thread, and every instance still validates as itself."""

from __future__ import annotations

import threading
from typing import Any

from rest_framework import serializers

from apps.core.serializers import ReusedFieldsSerializer


class _RootSeen(serializers.CharField):
    """Records the serializer it saw as its root while validating."""

    def to_internal_value(self, data: Any) -> str:
        seen.append(self.root)
        return super().to_internal_value(data)


seen: list[Any] = []


class _Leg(serializers.Serializer[Any]):
    price = serializers.DecimalField(max_digits=8, decimal_places=2)


class _Input(ReusedFieldsSerializer):
    name = _RootSeen(max_length=5)
    qty = serializers.IntegerField(min_value=1)
    leg = _Leg(required=False)

    def validate_name(self, value: str) -> str:
        return f"{value}@{self.initial_data.get('qty')}"


def test_instances_of_a_thread_share_the_fields_and_each_validates_as_itself() -> None:
    seen.clear()
    a = _Input(data={"name": "aa", "qty": 1, "leg": {"price": "1.50"}})
    b = _Input(data={"name": "toolongname", "qty": 0, "leg": {"price": "x"}})
    partial = _Input(data={"name": "cc"}, partial=True)
    assert a.fields["name"] is b.fields["name"] is partial.fields["name"]  # built once
    assert a.fields["leg"] is b.fields["leg"]

    # b and the partial one validate between a's fields being built and a validating.
    assert not b.is_valid()
    assert set(b.errors) == {"name", "qty", "leg"}
    assert partial.is_valid(), partial.errors  # qty is required, but this instance is partial
    assert a.is_valid(), a.errors
    assert a.validated_data["name"] == "aa@1"
    assert str(a.validated_data["leg"]["price"]) == "1.50"
    assert partial.validated_data == {"name": "cc@None"}
    assert seen == [b, partial, a]  # each field ran with the instance validating as its root

    not_partial = _Input(data={"name": "dd"})
    assert not not_partial.is_valid()
    assert set(not_partial.errors) == {"qty"}


def test_each_thread_builds_its_own_fields() -> None:
    here = _Input(data={"name": "x", "qty": 1}).fields["name"]
    there: list[Any] = []
    t = threading.Thread(target=lambda: there.append(_Input(data={"name": "y", "qty": 1}).fields["name"]))
    t.start()
    t.join()
    assert there
    assert there[0] is not here
