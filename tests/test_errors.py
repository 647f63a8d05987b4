"""Tests of the error classes, their stored form and the conversion of arbitrary exceptions."""

from __future__ import annotations

import copy
import json
import pickle

import pytest

from django_durable.errors import (
    ERROR_TYPES,
    DurableExecutionCancelledError,
    DurableExecutionError,
    DurableExecutionNotFoundError,
    DurableExecutionTimedOutError,
    StoredError,
    convert_error,
)


def flags(error: DurableExecutionError) -> tuple[str, bool, bool]:
    return error.error_type, error.is_retryable, error.is_internal


class TestErrorClasses:
    """The seed's error classes (seed test T4)."""

    def test_retryable_is_generic_retryable_and_not_internal(self) -> None:
        error = DurableExecutionError.retryable("Error")
        assert flags(error) == ("generic", True, False)
        assert error.message == "Error"
        assert str(error) == "Error"

    def test_retryable_can_be_internal(self) -> None:
        error = DurableExecutionError.retryable("Error", is_internal=True)
        assert flags(error) == ("generic", True, True)

    def test_constructor_flags_match_the_factories(self) -> None:
        assert flags(DurableExecutionError("Error", is_retryable=True)) == (
            "generic",
            True,
            False,
        )
        assert flags(DurableExecutionError("Error", is_retryable=True, is_internal=True)) == (
            "generic",
            True,
            True,
        )

    def test_generic_error_is_not_retryable_by_default(self) -> None:
        assert flags(DurableExecutionError("Error")) == ("generic", False, False)

    def test_non_retryable_variants(self) -> None:
        assert flags(DurableExecutionError.non_retryable("Error")) == ("generic", False, False)
        assert flags(DurableExecutionError.non_retryable("Error", is_internal=True)) == (
            "generic",
            False,
            True,
        )
        assert flags(DurableExecutionError("Error", is_retryable=False)) == (
            "generic",
            False,
            False,
        )

    def test_not_found(self) -> None:
        error = DurableExecutionNotFoundError("Not found")
        assert flags(error) == ("not_found", False, False)
        assert error.message == "Not found"

    def test_timed_out(self) -> None:
        error = DurableExecutionTimedOutError("Timed out")
        assert flags(error) == ("timed_out", True, False)
        assert error.message == "Timed out"
        assert DurableExecutionTimedOutError().message == "Task execution timed out"

    def test_cancelled(self) -> None:
        error = DurableExecutionCancelledError("Cancelled")
        assert flags(error) == ("cancelled", False, False)
        assert DurableExecutionCancelledError().message == "Task execution cancelled"

    def test_subclasses_are_durable_execution_errors(self) -> None:
        for cls in (
            DurableExecutionNotFoundError,
            DurableExecutionTimedOutError,
            DurableExecutionCancelledError,
        ):
            assert issubclass(cls, DurableExecutionError)

    def test_not_found_is_caught_as_lookup_error(self) -> None:
        with pytest.raises(LookupError):
            raise DurableExecutionNotFoundError("Not found")

    def test_timed_out_is_caught_as_timeout_error(self) -> None:
        with pytest.raises(TimeoutError) as info:
            raise DurableExecutionTimedOutError()
        assert str(info.value) == "Task execution timed out"

    def test_cause_is_kept_as_dunder_cause(self) -> None:
        cause = ValueError("boom")
        error = DurableExecutionError.retryable("Error", cause=cause)
        assert error.cause is cause
        assert error.__cause__ is cause

    def test_raise_from_sets_the_cause(self) -> None:
        cause = ValueError("boom")
        with pytest.raises(DurableExecutionError) as info:
            raise DurableExecutionError("Error") from cause
        assert info.value.cause is cause

    def test_repr_shows_class_message_and_flags(self) -> None:
        assert repr(DurableExecutionError.retryable("Error")) == (
            "DurableExecutionError('Error', is_retryable=True, is_internal=False)"
        )
        assert repr(DurableExecutionCancelledError()).startswith(
            "DurableExecutionCancelledError('Task execution cancelled'"
        )

    @pytest.mark.parametrize(
        "error",
        [
            DurableExecutionError("Error", is_retryable=True, is_internal=True),
            DurableExecutionNotFoundError("Not found"),
            DurableExecutionTimedOutError(),
            DurableExecutionCancelledError("Cancelled", is_internal=True),
        ],
        ids=repr,
    )
    def test_pickle_and_copy_keep_class_and_flags(self, error: DurableExecutionError) -> None:
        for clone in (pickle.loads(pickle.dumps(error)), copy.copy(error)):
            assert type(clone) is type(error)
            assert (clone.message, clone.is_retryable, clone.is_internal) == (
                error.message,
                error.is_retryable,
                error.is_internal,
            )

    def test_error_types_maps_each_type_to_its_class(self) -> None:
        expected = {
            "generic": DurableExecutionError,
            "not_found": DurableExecutionNotFoundError,
            "timed_out": DurableExecutionTimedOutError,
            "cancelled": DurableExecutionCancelledError,
        }
        assert dict(ERROR_TYPES) == expected


class TestStoredError:
    """The stored form: a dict of four keys with attribute access."""

    def test_to_dict_is_the_stored_form_without_stack(self) -> None:
        stored = DurableExecutionTimedOutError("Timed out").to_dict()
        assert stored == {
            "error_type": "timed_out",
            "message": "Timed out",
            "is_retryable": True,
            "is_internal": False,
        }
        assert isinstance(stored, StoredError)

    def test_attribute_access(self) -> None:
        stored = StoredError(error_type="cancelled", message="Cancelled")
        assert stored.error_type == "cancelled"
        assert stored.message == "Cancelled"
        assert stored.is_retryable is False
        assert stored.is_internal is False

    def test_json_serializes_as_a_plain_dict(self) -> None:
        stored = DurableExecutionError.retryable("Error", is_internal=True).to_dict()
        assert json.loads(json.dumps(stored)) == stored
        assert json.loads(json.dumps(stored)) == {
            "error_type": "generic",
            "message": "Error",
            "is_retryable": True,
            "is_internal": True,
        }

    @pytest.mark.parametrize(
        "error",
        [
            DurableExecutionError("Error", is_retryable=True, is_internal=True),
            DurableExecutionError("Error"),
            DurableExecutionNotFoundError("Not found"),
            DurableExecutionTimedOutError(),
            DurableExecutionCancelledError(),
        ],
        ids=repr,
    )
    def test_round_trip_rebuilds_the_subclass(self, error: DurableExecutionError) -> None:
        rebuilt = StoredError.from_dict(json.loads(json.dumps(error.to_dict()))).to_exception()
        assert type(rebuilt) is type(error)
        assert rebuilt.to_dict() == error.to_dict()
        assert str(rebuilt) == error.message

    def test_from_exception_converts_other_exceptions(self) -> None:
        assert StoredError.from_exception(ValueError("bad")) == {
            "error_type": "generic",
            "message": "bad",
            "is_retryable": True,
            "is_internal": False,
        }

    def test_from_dict_fills_missing_keys_and_drops_unknown_ones(self) -> None:
        stored = StoredError.from_dict({"message": "Error", "stack": "..."})
        assert stored == {
            "error_type": "generic",
            "message": "Error",
            "is_retryable": False,
            "is_internal": False,
        }

    def test_unknown_error_type_rebuilds_a_generic_error(self) -> None:
        error = StoredError(error_type="mystery", message="?", is_retryable=True).to_exception()
        assert type(error) is DurableExecutionError
        assert error.is_retryable is True

    def test_pickles(self) -> None:
        stored = DurableExecutionCancelledError().to_dict()
        clone = pickle.loads(pickle.dumps(stored))
        assert isinstance(clone, StoredError)
        assert clone == stored


class TestConvertError:
    """``convert_error`` (seed-spec §17)."""

    def test_durable_error_is_returned_as_is(self) -> None:
        error = DurableExecutionTimedOutError()
        assert convert_error(error) is error

    def test_prefix_keeps_subclass_and_flags(self) -> None:
        error = DurableExecutionCancelledError(is_internal=True)
        converted = convert_error(error, prefix="Child")
        assert type(converted) is DurableExecutionCancelledError
        assert converted.message == "Child: Task execution cancelled"
        assert (converted.is_retryable, converted.is_internal) == (False, True)
        assert error.message == "Task execution cancelled"

    def test_overrides_apply_to_generic_errors(self) -> None:
        error = DurableExecutionError.retryable("Error")
        converted = convert_error(error, is_retryable=False, is_internal=True)
        assert flags(converted) == ("generic", False, True)
        assert flags(error) == ("generic", True, False)

    def test_overrides_do_not_apply_to_subclasses(self) -> None:
        error = DurableExecutionTimedOutError()
        assert convert_error(error, is_retryable=False, is_internal=True) is error

    def test_other_exception_becomes_retryable_generic_error(self) -> None:
        cause = ValueError("bad value")
        converted = convert_error(cause)
        assert type(converted) is DurableExecutionError
        assert flags(converted) == ("generic", True, False)
        assert converted.message == "bad value"
        assert converted.cause is cause

    def test_other_exception_with_overrides_and_prefix(self) -> None:
        converted = convert_error(
            RuntimeError("boom"), prefix="Serializer", is_retryable=False, is_internal=True
        )
        assert flags(converted) == ("generic", False, True)
        assert converted.message == "Serializer: boom"

    def test_empty_message_uses_the_class_name(self) -> None:
        assert convert_error(KeyError()).message == "KeyError"

    def test_exception_group_becomes_non_retryable_multiple_errors(self) -> None:
        group = ExceptionGroup("many", [ValueError("a"), DurableExecutionCancelledError("b")])
        converted = convert_error(group)
        assert converted.message == "Multiple errors:\na\nb"
        assert converted.is_retryable is False
