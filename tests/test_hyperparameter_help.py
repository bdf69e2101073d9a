"""A method's hyper-parameter help (train.py --help, the docs) is its constructor's `Args:` section: this
checks that the section cannot drift from the signature the code runs with.

For every method: one `Args:` entry per constructor argument and no other, in the signature's order,
each with help; each argument annotated, with a default of its declared type; a help that names a
default names the declared one; and for a text argument whose constructor accepts only some values,
the default is one of them and every value the help lists as alternatives ("a, b or c") is accepted.
The checker is also run on deliberately wrong methods, so each rule is shown to fail.
"""

import inspect
import re

import pytest

from introspective_tf import methods, models
from introspective_tf.errors import ConfigError
from introspective_tf.methods.base import Method, UnitInterval, _check, _documented_args

_BOGUS = "not_a_value_of_this"


def _arguments(cls) -> dict[str, inspect.Parameter]:
    return {
        name: p
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if name not in ("self", "backbone") and p.kind is p.POSITIONAL_OR_KEYWORD
    }


def _entry_names(docstring: str) -> list[str]:
    """Every `name:` entry of the `Args:` section, duplicates included (`_documented_args` keeps one)."""
    if "Args:" not in docstring:
        return []
    lines = [line for line in docstring.split("Args:", 1)[1].splitlines() if line.strip()]
    if not lines:
        return []
    indent = min(len(line) - len(line.lstrip()) for line in lines)
    return [
        re.match(r"\s*(\w+):", line).group(1)
        for line in lines
        if len(line) - len(line.lstrip()) == indent and re.match(r"\s*\w+:(\s|$)", line)
    ]


def _accepted_values(cls, name: str, backbone) -> set[str] | None:
    """The values the constructor accepts for text argument `name`, read from its error for a bogus
    value ("name must be one of ('a', 'b'), not '...'"); None if it takes free text (paths, layer names)."""
    try:
        cls(backbone, **{name: _BOGUS})
    except ConfigError as err:
        match = re.search(rf"{name} must be (.*), not '{_BOGUS}'", str(err))
        if match:
            return set(re.findall(r"[A-Za-z_]\w*", match.group(1))) - {"one", "of", "or"}
    return None


def _listed_alternatives(help_text: str) -> list[list[str]]:
    """The "a, b or c" lists in a help text."""
    return [re.split(r",? or |, ", found) for found in re.findall(r"\w+(?:, \w+)*,? or \w+", help_text)]


def problems(cls, backbone) -> list[str]:
    """What is wrong with `cls`'s hyper-parameter declarations (empty: nothing)."""
    found = []
    docstring = cls.__init__.__doc__ or ""
    arguments, entries = _arguments(cls), _entry_names(docstring)
    helps = _documented_args(docstring)
    for name in sorted({n for n in entries if entries.count(n) > 1}):
        found.append(f"{name}: documented twice")
    for name in arguments:
        if name not in entries:
            found.append(f"{name}: no Args: entry")
    for name in entries:
        if name not in arguments:
            found.append(f"{name}: an Args: entry that names no argument")
    if not found and entries != list(arguments):
        found.append(f"Args: order {entries} differs from the signature's {list(arguments)}")
    for name, parameter in arguments.items():
        help_text = helps.get(name, "")
        if name in entries and not help_text.strip():
            found.append(f"{name}: empty help")
        declared = cls.hyperparameters()[name].type  # from the annotation: float, UnitInterval, Literal[...]
        allowed = cls.hyperparameters()[name].allowed
        if parameter.annotation is parameter.empty:
            found.append(f"{name}: no type annotation")
        if parameter.default is parameter.empty:
            found.append(f"{name}: no default")
            continue
        if type(parameter.default) is not declared:
            found.append(f"{name}: default {parameter.default!r} is not a {declared.__name__}")
        if allowed is not None and not allowed.allows(parameter.default):
            found.append(f"{name}: default {parameter.default!r} is not {allowed}")
        for stated in re.findall(r"\bdefault(?:s to| is|:| =)? `?([^\s`,;)]+)", help_text):
            if stated.rstrip(".") != str(parameter.default):
                found.append(f"{name}: help says default {stated}, the signature {parameter.default!r}")
        if isinstance(parameter.default, str):
            accepted = _accepted_values(cls, name, backbone)
            if accepted is None:
                continue
            if parameter.default not in accepted:
                found.append(f"{name}: default {parameter.default!r} is not one of {sorted(accepted)}")
            for listed in _listed_alternatives(help_text):
                if set(listed) & accepted and not set(listed) <= accepted:
                    found.append(f"{name}: help lists {sorted(set(listed) - accepted)}, not accepted")
    return found


@pytest.fixture(scope="module")
def backbone():
    return models.small_cnn((32, 32, 3), 10)


@pytest.mark.parametrize("name", list(methods.METHODS))
def test_every_method_documents_exactly_its_arguments(name, backbone):
    assert problems(methods.METHODS[name], backbone) == []
    for hyperparameter in methods.get(name).hyperparameters().values():  # what train.py's flags show
        assert hyperparameter.help and type(hyperparameter.default) is hyperparameter.type


class _Wrong(Method):
    def __init__(
        self,
        backbone,
        rate: float = 1,
        mode: str = "fast",
        shape: str = "round",
        steps: int = 3,
        untyped=2.0,
        **kwargs,
    ):
        """Args:
        rate: a rate.
        mode: how: fast, slow or turbo (default slow).
        shape: round or square.
        colour: an argument that does not exist.
        shape: documented twice.
        untyped: no annotation.
        """
        super().__init__(backbone, **kwargs)
        _check(mode in ("fast", "slow"), f"mode must be one of ('fast', 'slow'), not '{mode}'")
        _check(shape in ("square", "triangle"), f"shape must be square or triangle, not '{shape}'")


def test_the_checker_finds_each_kind_of_mistake(backbone):
    assert sorted(problems(_Wrong, backbone)) == sorted(
        [
            "shape: documented twice",
            "steps: no Args: entry",
            "colour: an Args: entry that names no argument",
            "rate: default 1 is not a float",
            "mode: help says default slow, the signature 'fast'",
            "mode: help lists ['turbo'], not accepted",
            "shape: default 'round' is not one of ['square', 'triangle']",
            "untyped: no type annotation",
        ]
    )


def test_the_checker_finds_an_empty_help_and_a_wrong_order(backbone):
    class Quiet(Method):
        def __init__(self, backbone, first: float = 0.5, second: int = 1, **kwargs):
            """Args:
            second: the second.
            first:
            """
            super().__init__(backbone, **kwargs)

    assert problems(Quiet, backbone) == [
        "Args: order ['second', 'first'] differs from the signature's ['first', 'second']",
        "first: empty help",
    ]


def test_the_checker_finds_a_default_outside_its_declared_values(backbone):
    class OutOfRange(Method):
        def __init__(self, backbone, share: UnitInterval = 1.5, **kwargs):
            """Args:
            share: a share.
            """
            super().__init__(backbone, **kwargs)

    assert problems(OutOfRange, backbone) == ["share: default 1.5 is not in [0, 1]"]
    with pytest.raises(ConfigError, match=r"^share must be in \[0, 1\], not 1.5$"):
        OutOfRange(backbone)
    OutOfRange(backbone, share=0.5)
