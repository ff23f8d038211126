"""Attribute and item access on ``config_expr`` defer until the configs are resolved."""

from __future__ import annotations

import pickle

import pytest

from flowkernel.flow.config import ConfigError, ConfigValue, config_expr


def test_attribute_and_item_access_build_deferred_expressions():
    expr = config_expr("cfg").model["layers"].count
    assert repr(expr) == "config_expr('cfg').model['layers'].count"
    configs = {"cfg": ConfigValue({"model": {"layers": {"count": 3}}})}
    assert expr.evaluate(configs) == 3
    assert config_expr("cfg.model").layers.evaluate(configs) == ConfigValue({"count": 3})


def test_a_missing_key_names_the_whole_expression():
    with pytest.raises(ConfigError, match=r"config_expr\('cfg'\)\.nope failed"):
        config_expr("cfg").nope.evaluate({"cfg": ConfigValue({"a": 1})})


def test_expressions_are_immutable_values_that_pickle():
    expr = config_expr("cfg")["a"]
    with pytest.raises(TypeError):
        expr.expr = "other"
    again = pickle.loads(pickle.dumps(expr))
    assert again.evaluate({"cfg": {"a": 5}}) == 5
    with pytest.raises(AttributeError):
        expr._private  # noqa: B018
