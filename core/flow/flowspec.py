"""``FlowSpec``: the base class of every flow, and what a step sees as ``self``.

Artifact reads are lazy: a task's instance knows the content hashes of the artifacts it may
read (``_fk_shas``: inherited from its parent, passed down to a join, or merged) and loads one
only when user code touches it. The task executor (:mod:`flowkernel.engine.executor`) sets up the
instance before the step runs and persists it afterwards.
"""

from __future__ import annotations

import itertools
import reprlib
import sys
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

from flowkernel.errors import (
    InvalidNextError,
    MergeArtifactsError,
    MissingInMergeArtifactsError,
    TooManySplitsError,
    UnhandledInMergeArtifactsError,
)
from flowkernel.flow.config import Config
from flowkernel.flow.parameters import Parameter
from flowkernel.unbounded_foreach import UnboundedForeachInput

#: Internal artifacts merge_artifacts never merges (unless named in ``include``).
MERGE_SKIP = frozenset(
    {
        "_foreach_values",
        "_unbounded_foreach",
        "_control_mapper_tasks",
        "_control_task_is_mapper_zero",
        "_parallel_ubf_iter",
    }
)
#: Instance attributes that are never persisted.
EPHEMERAL = frozenset({"_EPHEMERAL", "_datastore", "_cached_input", "_graph", "index", "input"})
_FOREACH_VALUE_LEN = 30


class ForeachFrame(NamedTuple):
    """One level of foreach nesting: the child step, the variable, the split and its index."""

    step: str
    var: str
    num_splits: int | None  #: None in the mapper tasks of an unbounded foreach
    index: int | None  #: None in the control task of an unbounded foreach
    value: str | None  #: display value (None: not recorded; ``_foreach_values`` has them all)


class ForeachChunks(NamedTuple):
    """A foreach step's items stored again in chunks of ``size`` consecutive items (see
    :mod:`flowkernel.engine.foreach_chunks`): ``self.input`` in a child task loads the one
    chunk holding its item, verified like any artifact, instead of the whole variable."""

    var: str  #: the foreach variable
    source: str  #: content hash of the variable's value the chunks were cut from
    size: int  #: items per chunk (the last one may hold fewer)
    shas: tuple[str, ...]  #: content hash of each chunk (a pickled list of items)


#: Foreach chunks this process loaded (and verified against their hashes), by content hash.
#: Their items are immutable plain values and the lists themselves are never handed out, so
#: one load serves every task that reads the chunk: the later tasks of a pool process, and
#: every task a fork server forks after loading it for them
#: (:func:`flowkernel.engine.executor.preload_input`).
_CHUNKS: dict[str, list[Any]] = {}
_CHUNKS_MAX = 4


def load_chunk(store: Any, chunks: ForeachChunks, index: int, where: str | None = None) -> Any:
    """The chunk of ``chunks`` that holds item ``index`` (loaded once per process)."""
    sha = chunks.shas[index // chunks.size]
    chunk = _CHUNKS.get(sha)
    if chunk is None:
        chunk = store.load(sha, chunks.var, where)
        if len(_CHUNKS) >= _CHUNKS_MAX:
            del _CHUNKS[next(iter(_CHUNKS))]
        _CHUNKS[sha] = chunk
    return chunk


def _caller_location() -> tuple[str | None, int | None]:
    """File and line of the innermost frame outside this module (the step's ``self.next``)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back
    return (frame.f_code.co_filename, frame.f_lineno) if frame is not None else (None, None)


def _display_value(value: Any) -> str:
    """The short display string recorded per foreach element."""
    text = str(value) if isinstance(value, (str, int, float, bool)) else reprlib.repr(value)
    return text[:_FOREACH_VALUE_LEN]


def _length(obj: Any) -> int | None:
    """``len(obj)`` if it has one (a range of 10**12 included), else None."""
    try:
        return len(obj)
    except OverflowError:  # range(10**30): longer than any limit
        return sys.maxsize
    except TypeError:
        return None


def _too_many(step: str, var: str, limit: int, size: int | None) -> TooManySplitsError:
    if size is not None and size < sys.maxsize:
        what = f"yielded {size} child steps, more than the maximum of {limit}"
    else:
        what = f"over self.{var} yielded more than the maximum of {limit} child steps"
    return TooManySplitsError(f"Foreach in step '{step}' {what}; raise it with --max-num-splits")


def _element(obj: Any, index: int) -> Any:
    try:
        return obj[index]
    except TypeError:  # no __getitem__: iterate
        return next(itertools.islice(iter(obj), index, None))


class _GraphOfFlow:
    """``flow._graph`` / ``MyFlow._graph``: the flow's :class:`~flowkernel.graph.model.FlowGraph`.

    The graph a kernel built for the class (``Kernel.build_graph`` caches it there); read from an
    instance before any was built, the installed graph builder builds it. Read from the class
    before that, it is this descriptor: code that walks ``dir(flow_cls)`` while the graph is
    being built must not build it early (``--with`` decorators are not attached yet).
    """

    def __get__(self, instance: Any, owner: type) -> Any:
        graph = owner.__dict__.get("_fk_graph")
        if graph is None and instance is None:
            return self
        if graph is None:
            from flowkernel.kernel import Kernel

            graph = Kernel.discover().build_graph(owner)  # caches it as owner._fk_graph
        return graph


class FlowSpec:
    """Subclass this and decorate methods with ``@step``.

    ``MyFlow()`` (as a script's ``__main__``) hands over to the ``flow`` command line, so
    ``python myflow.py run`` works like ``flow run myflow.py``; ``MyFlow(use_cli=False)`` builds
    an inert instance.
    """

    # internal defaults (instance attributes shadow them inside a task)
    _foreach_stack: tuple[ForeachFrame, ...] = ()
    _iteration_stack: tuple[int, ...] = ()
    _transition: Any = None
    _graph = _GraphOfFlow()

    def __init__(self, use_cli: bool = True):
        if use_cli:
            from flowkernel.cli.main import main_for_flow

            main_for_flow(type(self))

    def __iter__(self) -> Iterator[Any]:
        """The flow's steps (bound step methods, each with ``.name``) in graph order: ``for step
        in flow``; ``flow._graph[step.name]`` is the step's node."""
        graph = self._graph
        order = graph.sorted_nodes or tuple(graph.nodes)
        return iter([getattr(self, name) for name in order])

    # -- identity ------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The flow's name: its class name."""
        return type(self).__name__

    @classmethod
    def _fk_constants(cls) -> dict[str, Any]:
        """Class-level constants: public, non-callable, non-Parameter class attributes."""
        cached = cls.__dict__.get("_fk_constants_cache")
        if cached is not None:
            return cached
        found: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            if klass is object or klass is FlowSpec:
                continue
            for attr, value in vars(klass).items():
                if attr.startswith("_") or isinstance(value, (Parameter, Config, property)):
                    continue
                if callable(value) or isinstance(value, (staticmethod, classmethod)):
                    continue
                found[attr] = value
        cls._fk_constants_cache = found
        return found

    @classmethod
    def _fk_parameter_names(cls) -> tuple[str, ...]:
        """The attribute names of the flow's parameters, in definition order (cached)."""
        cached = cls.__dict__.get("_fk_parameter_names_cache")
        if cached is None:
            from flowkernel.flow.parameters import flow_parameters

            cached = cls._fk_parameter_names_cache = tuple(flow_parameters(cls))
        return cached

    @classmethod
    def _fk_readonly(cls) -> frozenset[str]:
        cached = cls.__dict__.get("_fk_readonly_cache")
        if cached is None:
            from flowkernel.flow.config import flow_configs
            from flowkernel.flow.parameters import flow_parameters

            names = set(flow_parameters(cls)) | set(cls._fk_constants()) | set(flow_configs(cls))
            cached = frozenset(names | {"name"})
            cls._fk_readonly_cache = cached
        return cached

    # -- attribute access ----------------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name.startswith("_fk_"):
            raise AttributeError(name)
        state = self.__dict__
        shas = state.get("_fk_shas")
        if shas is not None and name in shas:
            value = state["_fk_store"].load(shas[name], name, state.get("_fk_where"), hold=True)
            state[name] = value
            state["_fk_loaded"][name] = value
            return value
        raise AttributeError(f"Flow {type(self).__name__} has no attribute '{name}'")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in type(self)._fk_readonly():
            raise AttributeError(
                f"Cannot set '{name}': Flow level attributes and Parameters are not modifiable"
            )
        object.__setattr__(self, name, value)

    def _fk_has(self, name: str) -> bool:
        """True if ``name`` is readable on self without loading it."""
        return (
            name in self.__dict__
            or name in (self.__dict__.get("_fk_shas") or ())
            or hasattr(type(self), name)
        )

    def __reduce__(self):
        raise TypeError(
            "a flow instance (self or a join input) cannot be stored as an artifact; "
            "store the specific attributes you need instead"
        )

    # -- foreach accessors ---------------------------------------------------------------------

    @property
    def index(self) -> int | None:
        """Index of this task in the innermost foreach, ``None`` outside any foreach."""
        stack = self._foreach_stack
        return stack[-1].index if stack else None

    @property
    def input(self) -> Any:
        """The element of the innermost foreach this task handles (``None`` if not visible)."""
        stack = self._foreach_stack
        return self._fk_frame_value(stack[-1]) if stack else None

    def _fk_frame_value(self, frame: ForeachFrame) -> Any:
        state = self.__dict__
        chunks = state.get("_fk_chunks")
        if (
            chunks is not None
            and frame.var == chunks.var
            and frame.step == state.get("_current_step")
            and frame.var not in state  # neither loaded nor reassigned by this task
            and state["_fk_shas"].get(frame.var) == chunks.source
        ):
            return self._fk_chunk_item(chunks, frame.index)
        try:
            return _element(getattr(self, frame.var), frame.index)
        except (AttributeError, IndexError, StopIteration, KeyError):
            return None

    def _fk_chunk_item(self, chunks: ForeachChunks, index: int) -> Any:
        """Item ``index`` of the foreach variable, from its chunk (loaded once per task, so
        ``self.input is self.input`` holds as it does for the whole variable)."""
        state = self.__dict__
        if "_fk_input" not in state:
            chunk = load_chunk(state["_fk_store"], chunks, index, state.get("_fk_where"))
            state["_fk_input"] = chunk[index % chunks.size]
        return state["_fk_input"]

    def foreach_stack(self) -> list[tuple[int, int, Any]]:
        """``(index, num_splits, value)`` for every enclosing foreach, outermost first."""
        return [(f.index, f.num_splits, self._fk_frame_value(f)) for f in self._foreach_stack]

    # -- transitions ---------------------------------------------------------------------------

    def next(self, *dsts: Any, **kwargs: Any) -> None:
        """Name the step(s) that run after this one. Must be the step's last statement.

        Forms: ``self.next(self.a)``; ``self.next(self.a, self.b)`` (all run);
        ``self.next(self.a, foreach="items")``; ``self.next(self.a, num_parallel=4)``;
        ``self.next({"x": self.a, "y": self.b}, condition="attr")`` (exactly one runs).
        """
        step = self.__dict__.get("_current_step", "?")

        def fail(msg: str) -> InvalidNextError:
            file, line = _caller_location()
            return InvalidNextError(
                f"invalid self.next() transition: {msg}", step=step, file=file, line=line
            )

        foreach = kwargs.pop("foreach", None)
        num_parallel = kwargs.pop("num_parallel", None)
        condition = kwargs.pop("condition", None)
        if kwargs:
            raise fail(f"unknown argument(s) {', '.join(sorted(kwargs))}")
        if self.__dict__.get("_transition") is not None:
            raise fail("self.next() was called more than once")
        if not dsts:
            raise fail("no target step given")
        if condition is not None:
            self._fk_switch(dsts, condition, foreach, num_parallel, fail)
            return
        if any(isinstance(d, dict) for d in dsts):
            raise fail("a dict of cases needs condition='<attribute name>'")
        names = [self._fk_target(d, fail) for d in dsts]
        if foreach is not None or num_parallel is not None:
            if foreach is not None and num_parallel is not None:
                raise fail("foreach and num_parallel cannot be combined")
            if len(names) != 1:
                raise fail("a foreach or num_parallel transition takes exactly one target")
            if foreach is not None:
                self._fk_foreach(foreach, fail)
            else:
                self._fk_parallel(num_parallel, fail)
        self._transition = (names, foreach)

    def _fk_target(self, dst: Any, fail: Any) -> str:
        func = getattr(dst, "__func__", None)
        if getattr(dst, "__self__", None) is not self or not getattr(func, "is_step", False):
            raise fail(f"{dst!r} is not a step of this flow (use self.<step name>)")
        return func.__name__

    def _fk_switch(self, dsts, condition, foreach, num_parallel, fail) -> None:
        if foreach is not None or num_parallel is not None:
            raise fail("condition cannot be combined with foreach or num_parallel")
        if len(dsts) != 1 or not isinstance(dsts[0], dict) or not dsts[0]:
            raise fail("a switch takes exactly one non-empty dict of cases")
        if not isinstance(condition, str):
            raise fail("condition must be the name of an attribute (a string)")
        cases = {key: self._fk_target(d, fail) for key, d in dsts[0].items()}
        try:
            value = getattr(self, condition)
        except AttributeError:
            raise fail(f"the condition attribute self.{condition} does not exist")
        if value not in cases:
            raise RuntimeError(
                f"Switch condition self.{condition} = {value!r} matches no case in step "
                f"'{step_name(self)}'; available cases: {', '.join(repr(k) for k in cases)}"
            )
        self._transition = ([cases[value]], None)

    def _fk_foreach(self, var: Any, fail: Any) -> None:
        if not isinstance(var, str):
            raise fail("foreach must be the name of an attribute (a string)")
        try:
            obj = getattr(self, var)
        except AttributeError:
            raise fail(f"the foreach variable self.{var} does not exist")
        if isinstance(obj, Mapping):
            raise fail(
                f"the foreach variable self.{var} is a {type(obj).__name__}; foreach takes a "
                f"list, tuple, range or other iterable of the items, e.g. "
                f"list(self.{var}.items()) or list(self.{var})"
            )
        limit = self.__dict__.get("_fk_max_splits")
        if isinstance(obj, UnboundedForeachInput):
            self._fk_unbounded(var)
            return
        size = _length(obj)
        if limit is not None and size is not None and size > limit:
            raise _too_many(step_name(self), var, limit, size)
        try:
            items = iter(obj)
        except TypeError as exc:
            raise fail(f"the foreach variable self.{var} is not iterable: {exc}")
        if limit is not None:  # never materialise more than the limit (itertools.count())
            items = itertools.islice(items, limit + 1)
        values = [_display_value(v) for v in items]
        if limit is not None and len(values) > limit:
            raise _too_many(step_name(self), var, limit, None)
        if not values:
            raise fail(f"foreach over self.{var} produced zero splits")
        self._foreach_var = var
        self._foreach_num_splits = len(values)
        self._foreach_values = values

    def _fk_unbounded(self, var: str) -> None:
        """A foreach over an UnboundedForeachInput: no width yet, its control task decides it
        (:mod:`flowkernel.unbounded_foreach`)."""
        self._unbounded_foreach = True
        self._foreach_var = var
        self._foreach_num_splits = None

    def _fk_parallel(self, num: Any, fail: Any) -> None:
        if not isinstance(num, int) or isinstance(num, bool) or num < 1:
            raise fail(f"num_parallel must be an integer of at least 1, not {num!r}")
        self._parallel_ubf_iter = list(range(num))
        self._foreach_var = "_parallel_ubf_iter"
        self._foreach_num_splits = num
        self._foreach_values = [str(i) for i in range(num)]

    # -- joins ---------------------------------------------------------------------------------

    def merge_artifacts(
        self,
        inputs: Inputs,
        exclude: list[str] | None = None,
        include: list[str] | None = None,
    ) -> None:
        """Copy the inputs' artifacts into this join, by reference.

        Names already set on self (parameters, constants, anything assigned before the call)
        are skipped. A name present in several inputs with different contents (different
        pickled bytes) is a conflict: :class:`UnhandledInMergeArtifactsError`, and nothing is
        assigned. ``include`` limits the merge to those names (each must exist somewhere:
        :class:`MissingInMergeArtifactsError`); ``exclude`` skips names. Not both.
        """
        node = self.__dict__.get("_fk_node")
        if node is None or node.type != "join":
            raise MergeArtifactsError("merge_artifacts can only be called in a join step")
        if exclude and include:
            raise MergeArtifactsError("merge_artifacts: give either include or exclude, not both")
        exclude_set, include_set = set(exclude or ()), set(include or ())
        collected: dict[str, str] = {}
        conflicts: list[str] = []
        for inp in inputs:
            for name, sha in inp.__dict__["_fk_shas"].items():
                if include_set:
                    if name not in include_set or self._fk_has(name):
                        continue
                elif name in exclude_set or name in MERGE_SKIP or self._fk_has(name):
                    continue
                if name not in collected:
                    collected[name] = sha
                elif collected[name] != sha:
                    conflicts.append(name)
        if conflicts:
            raise UnhandledInMergeArtifactsError(
                "Step '{}' cannot merge artifacts whose values differ between inputs: {}. "
                "Assign them explicitly (self.x = ...) before calling merge_artifacts, or "
                "exclude them.".format(step_name(self), ", ".join(conflicts)),
                conflicts,
            )
        missing = [n for n in sorted(include_set) if n not in collected and not self._fk_has(n)]
        if missing:
            raise MissingInMergeArtifactsError(
                f"merge_artifacts: include names artifacts no input has: {', '.join(missing)}",
                missing,
            )
        self.__dict__["_fk_shas"].update(collected)


def step_name(flow: FlowSpec) -> str:
    return flow.__dict__.get("_current_step", "?")


class Inputs:
    """What a join step receives: its inputs in order, also reachable as ``inputs.<step>``."""

    def __init__(self, flows: list[FlowSpec]):
        self._flows = list(flows)
        self._by_step = {f.__dict__.get("_current_step"): f for f in self._flows}

    def __getattr__(self, name: str) -> FlowSpec:
        by_step = self.__dict__.get("_by_step", {})
        if name in by_step:
            return by_step[name]
        raise AttributeError(f"no input from a step named '{name}'")

    def __getitem__(self, index: int) -> FlowSpec:
        return self._flows[index]

    def __iter__(self) -> Iterator[FlowSpec]:
        return iter(self._flows)

    def __len__(self) -> int:
        return len(self._flows)
