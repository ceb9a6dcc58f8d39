"""River models stored as pickles that can only rebuild reviewed names.

A pickle names every class and function it rebuilds (its "globals") and may call any of them; an
ordinary ``pickle.loads`` imports whatever is named, so a model holding ``os.system`` runs it on every
load. Here :class:`RestrictedUnpickler` admits only an exact list of names: the River classes and
functions of :mod:`shipyard.flavors.river_names`, the NumPy and standard-library names River pickles
use, and a short list of pure functions (``math.log1p``, ``numpy.sqrt``, ...) for ``FuncTransformer``.
Anything else is refused before it is imported, with its exact name and how to trust it on purpose.
``builtins.getattr``, which pickles use to rebuild bound methods, is replaced by a version that only
returns reviewed ``Class.method`` pairs.

:func:`check_model` looks at a model object before it is serialised (and before it is ever called),
refusing lambdas, local functions and objects of classes outside the list, naming where they sit.

>>> from river import linear_model, preprocessing
>>> import pickle
>>> model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
>>> check_model(model)
>>> type(restricted_loads(pickle.dumps(model))).__name__
'Pipeline'
>>> restricted_loads(b"cos\\nsystem\\n(S'echo hacked'\\ntR.")
Traceback (most recent call last):
...
shipyard.flavors.river_pickle.UntrustedObjects: the stored River model refers to names shipyard does not \
rebuild: os.system. If you know they are safe, pass their exact names with trusted_types=[...] \
(CLI: --trust-type NAME, or SHIPYARD_TRUSTED_TYPES)
"""

from __future__ import annotations

import collections
import functools
import io
import pickle
import pickletools
import types
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from shipyard.errors import UntrustedArtifact, UntrustedTypes
from shipyard.flavors.river_names import RIVER_CLASSES, RIVER_FUNCTIONS

_TRUST_HOW = (
    "If you know they are safe, pass their exact names with trusted_types=[...] "
    "(CLI: --trust-type NAME, or SHIPYARD_TRUSTED_TYPES)"
)


def _names(groups: dict[str, tuple[str, ...]]) -> frozenset[str]:
    return frozenset(f"{module}.{name}" for module, names in groups.items() for name in names)


STANDARD_NAMES: dict[str, tuple[str, ...]] = {
    "builtins": (
        "bool",
        "bytearray",
        "bytes",
        "complex",
        "dict",
        "float",
        "frozenset",
        "int",
        "iter",
        "list",
        "range",
        "set",
        "slice",
        "str",
        "tuple",
    ),
    "collections": ("Counter", "OrderedDict", "defaultdict", "deque"),
    "copy": ("deepcopy",),
    "datetime": ("date", "datetime", "time", "timedelta", "timezone"),
    "functools": ("partial",),
    "numbers": ("Complex", "Integral", "Number", "Real"),
    "operator": ("itemgetter",),
    "random": ("Random",),
    "re": ("_compile",),
    "statistics": ("NormalDist",),
    "numpy": ("array", "dtype", "ndarray", "ones", "zeros"),
    "numpy._core.multiarray": ("_reconstruct", "scalar"),
    "numpy._core.numeric": ("_frombuffer",),
    "numpy.core.multiarray": ("_reconstruct", "scalar"),
    "numpy.core.numeric": ("_frombuffer",),
    "numpy.random._pickle": ("__bit_generator_ctor", "__generator_ctor", "__randomstate_ctor"),
    "numpy.random._generator": ("Generator",),
    "numpy.random.mtrand": ("RandomState",),
    "numpy.random._mt19937": ("MT19937",),
    "numpy.random._pcg64": ("PCG64", "PCG64DXSM"),
    "numpy.random._philox": ("Philox",),
    "numpy.random._sfc64": ("SFC64",),
    "numpy.random.bit_generator": ("SeedSequence", "__pyx_unpickle_SeedSequence"),
}
"""Standard-library and NumPy names River pickles use (containers, random states, arrays). None of them reads
or writes files, imports modules, runs strings or looks attributes up by name."""

PURE_FUNCTIONS: dict[str, tuple[str, ...]] = {
    "builtins": ("abs", "len", "max", "min", "round", "sorted", "sum"),
    "math": (
        "acos",
        "acosh",
        "asin",
        "asinh",
        "atan",
        "atan2",
        "atanh",
        "ceil",
        "cos",
        "cosh",
        "erf",
        "erfc",
        "exp",
        "expm1",
        "fabs",
        "floor",
        "hypot",
        "log",
        "log10",
        "log1p",
        "log2",
        "pow",
        "sin",
        "sinh",
        "sqrt",
        "tan",
        "tanh",
        "trunc",
    ),
    "numpy": (
        "abs",
        "absolute",
        "arctan",
        "cbrt",
        "ceil",
        "clip",
        "cos",
        "exp",
        "exp2",
        "expm1",
        "fabs",
        "floor",
        "log",
        "log10",
        "log1p",
        "log2",
        "negative",
        "reciprocal",
        "rint",
        "sign",
        "sin",
        "sqrt",
        "square",
        "tan",
        "tanh",
        "trunc",
    ),
}
"""Pure functions of numbers a ``FuncTransformer`` or ``TargetTransformRegressor`` may hold without trust."""

REVIEWED_METHODS: frozenset[str] = frozenset(
    {
        "builtins.str.lower",
        "random.Random.gauss",
        "river.bandit.thompson.ThompsonSampling._clone_reward_obj_with_seed",
        "river.drift.dummy.DummyDriftDetector._fixed_trigger",
        "river.drift.dummy.DummyDriftDetector._random_trigger",
        "river.drift.page_hinkley.PageHinkley._test_both",
        "river.drift.page_hinkley.PageHinkley._test_decrease",
        "river.drift.page_hinkley.PageHinkley._test_increase",
        "river.ensemble.bagging.LeveragingBaggingClassifier._leveraging_bag",
        "river.ensemble.bagging.LeveragingBaggingClassifier._leveraging_bag_half",
        "river.ensemble.bagging.LeveragingBaggingClassifier._leveraging_bag_me",
        "river.ensemble.bagging.LeveragingBaggingClassifier._leveraging_bag_wt",
        "river.ensemble.bagging.LeveragingBaggingClassifier._leveraging_subag",
        "river.feature_extraction.kernel_approx.RBFSampler._random_weights",
        "river.linear_model.pa.PAClassifier._calc_tau_0",
        "river.linear_model.pa.PAClassifier._calc_tau_1",
        "river.linear_model.pa.PAClassifier._calc_tau_2",
        "river.linear_model.pa.PARegressor._calc_tau_0",
        "river.linear_model.pa.PARegressor._calc_tau_1",
        "river.linear_model.pa.PARegressor._calc_tau_2",
        "river.multiclass.occ.OutputCodeClassifier._next_code",
        "river.preprocessing.random_projection.GaussianRandomProjector._rand_gauss",
        "river.preprocessing.random_projection.SparseRandomProjector._rand_weights_for_feature",
        "river.preprocessing.scale_target.TargetMinMaxScaler._scale",
        "river.preprocessing.scale_target.TargetMinMaxScaler._unscale",
        "river.preprocessing.scale_target.TargetStandardScaler._scale",
        "river.preprocessing.scale_target.TargetStandardScaler._unscale",
        "river.tree.splitter.qo_splitter.QOSplitter._update_estimator_multivariate",
        "river.tree.splitter.qo_splitter.QOSplitter._update_estimator_univariate",
    }
    | {f"{name}.clone" for name in _names(RIVER_CLASSES)}
)
"""Bound methods River models keep as attributes (``self._fn = self._method``), as ``module.Class.method``;
a pickle rebuilds them with ``getattr(obj, "method")``, which is refused for any other pair."""

REVIEWED_GLOBALS: frozenset[str] = (
    _names(RIVER_CLASSES) | _names(RIVER_FUNCTIONS) | _names(STANDARD_NAMES) | _names(PURE_FUNCTIONS)
)
"""Every ``module.name`` a stored River model may rebuild without the user trusting it."""

_REVIEWED_PAIRS: frozenset[tuple[str, str]] = frozenset(
    (module, name)
    for groups in (RIVER_CLASSES, RIVER_FUNCTIONS, STANDARD_NAMES, PURE_FUNCTIONS)
    for module, names in groups.items()
    for name in names
)
"""The same names as (module, name) pairs, exactly as a pickle writes them: ``numpy`` + ``random._pickle.x``
is not ``numpy.random._pickle`` + ``x``, so no other split of a reviewed name reaches a different object."""

OBJECT_ONLY_NAMES: frozenset[str] = frozenset(
    {"builtins.list_iterator", "builtins.tuple_iterator", "builtins.range_iterator", "re.Pattern"}
)
"""Types a River model object may hold that pickle stores through other names (``iter``, ``re._compile``)."""

_GETATTR = "builtins.getattr"
_NUMPY_FUNCTION = type(np.clip)
_STRING_OPCODES = frozenset(
    {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}
)
_PLAIN = (str, bytes, bytearray, int, float, complex, bool, type(None), range, slice, np.generic, np.dtype)


class UntrustedObjects(UntrustedTypes):
    """A River model, or its stored bytes, holding names outside the reviewed list (``types`` lists them)."""

    def __init__(self, names: Sequence[str], where: str, *, places: Sequence[str] = ()) -> None:
        found = sorted(set(names))
        listed = ", ".join(found)
        if places:
            listed = ", ".join(places)
        UntrustedArtifact.__init__(self, f"{where} refers to names shipyard does not rebuild: {listed}. {_TRUST_HOW}")
        self.types = found


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler whose ``find_class`` admits only :data:`REVIEWED_GLOBALS` and ``trusted`` exact names."""

    def __init__(self, file: io.BytesIO, trusted: Iterable[str] = ()) -> None:
        super().__init__(file)
        self.trusted = frozenset(trusted)
        self.refused: list[str] = []
        self._watched: dict[int, tuple[Any, dict[str, Any]]] = {}

    def find_class(self, module: str, name: str) -> Any:
        full = f"{module}.{name}"
        if full == _GETATTR and full not in self.trusted:
            return self._reviewed_getattr
        if (module, name) in _REVIEWED_PAIRS or full in self.trusted:
            found = super().find_class(module, name)
            if id(found) not in self._watched:
                self._watched[id(found)] = (found, _shared_state(found))
            return found
        self.refused.append(full)
        raise pickle.UnpicklingError(f"refused {full}")

    def changed_shared_state(self) -> list[str]:
        """Classes and functions the pickle changed (a ``BUILD`` applied to a class sets class attributes,
        which every model in the process shares), each put back as it was; their names."""
        changed = []
        for found, before in self._watched.values():
            after = _shared_state(found)
            if after.keys() == before.keys() and all(after[k] is before[k] for k in before):
                continue
            changed.append(f"{getattr(found, '__module__', '?')}.{getattr(found, '__qualname__', '?')}")
            for key in after.keys() - before.keys():
                delattr(found, key)
            for key, value in before.items():
                if after.get(key, _MISSING) is not value:
                    setattr(found, key, value)
        return changed

    def _reviewed_getattr(self, obj: Any, name: Any, *default: Any) -> Any:
        owner = obj if isinstance(obj, type) else type(obj)
        key = f"{owner.__module__}.{owner.__qualname__}.{name}"
        if not isinstance(name, str) or (key not in REVIEWED_METHODS and key not in self.trusted):
            self.refused.append(key)
            raise pickle.UnpicklingError(f"refused {key}")
        return getattr(obj, name)


def restricted_loads(data: bytes, trusted: Iterable[str] = (), *, where: str = "the stored River model") -> Any:
    """Rebuild pickled River bytes, refusing (:class:`UntrustedObjects`) any name outside the reviewed list.

    Nothing outside the list is imported, let alone called. Bytes that do not unpickle raise
    :class:`UntrustedArtifact`.
    """
    unpickler = RestrictedUnpickler(io.BytesIO(data), trusted)
    try:
        model = unpickler.load()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # a damaged Rust-backed state raises a BaseException (pyo3 PanicException)
        unpickler.changed_shared_state()
        if unpickler.refused:
            names = [*unpickler.refused, *scan_globals(data, unpickler.trusted)]
            raise UntrustedObjects(names, where) from None
        raise UntrustedArtifact(f"{where} cannot be rebuilt ({type(exc).__name__}: {exc}); it is damaged") from None
    changed = unpickler.changed_shared_state()
    if changed:
        raise UntrustedArtifact(
            f"{where} tries to change the shared classes or functions {', '.join(changed)} (a model never does); "
            "it was refused and they were put back"
        )
    return model


def scan_globals(data: bytes, trusted: Iterable[str] = ()) -> list[str]:
    """The names in pickle ``data`` outside the reviewed list, read from its opcodes without running any.

    Used to list every refused name in an error (the unpickler stops at the first one).

    >>> scan_globals(b"cos\\nsystem\\n(S'ls'\\ntR.")
    ['os.system']
    """
    allowed = REVIEWED_GLOBALS | frozenset(trusted) | {_GETATTR}
    found: list[str] = []
    strings: list[str] = []  # the strings pushed so far, for STACK_GLOBAL (which takes the last two)
    memo: dict[int, str] = {}
    memoized = 0
    last: str | None = None  # the string the previous opcode pushed, if it pushed one
    try:
        for opcode, arg, _ in pickletools.genops(data):
            pushed: str | None = None
            index = arg if isinstance(arg, int) else -1
            if opcode.name in _STRING_OPCODES:
                pushed = str(arg)
            elif opcode.name in ("BINPUT", "LONG_BINPUT", "PUT") and last is not None:
                memo[index] = last
            elif opcode.name == "MEMOIZE":
                if last is not None:
                    memo[memoized] = last
                memoized += 1
            elif opcode.name in ("BINGET", "LONG_BINGET", "GET") and index in memo:
                pushed = memo[index]
            elif opcode.name in ("GLOBAL", "INST"):
                found.append(str(arg).replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
            if pushed is not None:
                strings.append(pushed)
            if opcode.name not in ("BINPUT", "LONG_BINPUT", "PUT"):
                last = pushed if opcode.name != "MEMOIZE" else last
    except Exception:  # damaged bytes: report what was read so far
        pass
    return sorted({name for name in found if name not in allowed})


# ---------------------------------------------------------------------------------------- the model walk
def check_model(model: Any, trusted: Iterable[str] = ()) -> None:
    """Refuse a River model holding anything its stored form could not rebuild without trust.

    Looks at the object graph only (attributes, containers, ``functools.partial``, bound methods); it calls
    nothing on the model. Refused: objects of classes outside :data:`REVIEWED_GLOBALS`, functions and
    methods outside the reviewed lists (``FuncTransformer(os.system)``, ``FuncTransformer(eval)``), lambdas
    and functions defined inside other functions. ``trusted`` exact names are admitted.
    """
    allowed = REVIEWED_GLOBALS | OBJECT_ONLY_NAMES | frozenset(trusted)
    methods = REVIEWED_METHODS | frozenset(trusted)
    refused: list[tuple[str, str]] = []
    code: list[tuple[str, str]] = []
    _walk(model, allowed, methods, refused, code)
    if code:
        listed = ", ".join(f"{name} at {place}" for name, place in code)
        raise UntrustedArtifact(
            f"the model holds code that cannot be stored safely: {listed}. A lambda or a function defined inside "
            "another function cannot be stored; define it at module level and pass its exact name with "
            "trusted_types=[...] (CLI: --trust-type NAME)"
        )
    if refused:
        raise UntrustedObjects(
            [name for name, _ in refused], "the model", places=[f"{name} (at {place})" for name, place in refused]
        )


def _walk(
    root: Any,
    allowed: frozenset[str],
    methods: frozenset[str],
    refused: list[tuple[str, str]],
    code: list[tuple[str, str]],
) -> None:
    """Visit every object reachable from ``root``, recording refused names and code with where they sit."""
    seen: set[int] = set()
    stack: list[tuple[Any, str]] = [(root, type(root).__name__)]
    while stack:
        value, place = stack.pop()
        if isinstance(value, _PLAIN) or id(value) in seen:
            continue
        seen.add(id(value))
        stack.extend(_children(value, place, allowed, methods, refused, code))


def _children(
    value: Any,
    place: str,
    allowed: frozenset[str],
    methods: frozenset[str],
    refused: list[tuple[str, str]],
    code: list[tuple[str, str]],
) -> list[tuple[Any, str]]:
    if isinstance(value, (list, tuple, set, frozenset, collections.deque)):
        return [(item, f"{place}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        found = [(item, f"{place}[{key!r}]") for key, item in value.items()]
        found += [(key, f"{place} (a key)") for key in value]
        if isinstance(value, collections.defaultdict) and value.default_factory is not None:
            found.append((value.default_factory, f"{place}.default_factory"))
        if type(value) not in (dict, collections.defaultdict, collections.OrderedDict, collections.Counter):
            _check_name(_class_name(type(value)), place, allowed, refused)
        return found
    if isinstance(value, np.ndarray):
        return [(item, f"{place}[...]") for item in value.flat] if value.dtype.hasobject else []
    if isinstance(value, functools.partial):
        return [(value.func, f"{place}.func"), (value.args, f"{place}.args"), (value.keywords, f"{place}.keywords")]
    if isinstance(value, type):
        _check_name(_class_name(value), place, allowed, refused)
        return []
    if isinstance(value, types.MethodType) or _bound_builtin(value):
        owner = value.__self__
        key = f"{_class_name(type(owner))}.{value.__name__}"
        if key not in methods:
            refused.append((key, place))
        return [(owner, f"{place}.__self__")]
    if isinstance(value, types.FunctionType):
        name = f"{value.__module__}.{value.__qualname__}"
        if "<lambda>" in value.__qualname__ or "<locals>" in value.__qualname__:
            code.append((name, place))
        else:
            _check_name(name, place, allowed, refused)
        return []
    if isinstance(value, _NUMPY_FUNCTION):  # numpy.save, numpy.clip: pickled by their module and name
        _check_name(f"{value.__module__}.{value.__qualname__}", place, allowed, refused)
        return []
    if isinstance(value, (types.BuiltinFunctionType, np.ufunc)):
        module = getattr(value, "__module__", None) or "numpy"
        _check_name(f"{module}.{value.__name__}", place, allowed, refused)
        return []
    if isinstance(value, (types.MethodDescriptorType, types.WrapperDescriptorType)):
        key = f"{_class_name(value.__objclass__)}.{value.__name__}"
        if key not in methods:
            refused.append((key, place))
        return []
    name = _class_name(type(value))
    if not _check_name(name, place, allowed, refused):
        return []  # never look inside an object of an unknown class: its attributes may run code
    state = getattr(value, "__dict__", None)
    if isinstance(state, dict):
        return [(item, f"{place}.{key}") for key, item in state.items()]
    return []


_MISSING = object()
_FUNCTION_SLOTS = ("__defaults__", "__kwdefaults__", "__code__")


def _shared_state(found: Any) -> dict[str, Any]:
    """What a pickle could change on a class or function it names: class attributes, function defaults."""
    if isinstance(found, type):
        return dict(vars(found))
    if isinstance(found, types.FunctionType):
        return {**vars(found), **{slot: getattr(found, slot) for slot in _FUNCTION_SLOTS}}
    return {}


def _bound_builtin(value: Any) -> bool:
    """A built-in method bound to an object (``random.Random().gauss``), not a module-level builtin."""
    return isinstance(value, types.BuiltinMethodType) and not isinstance(
        getattr(value, "__self__", None), (types.ModuleType, type(None))
    )


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _check_name(name: str, place: str, allowed: frozenset[str], refused: list[tuple[str, str]]) -> bool:
    if name in allowed:
        return True
    refused.append((name, place))
    return False
