"""`@stage` and `@aggregate`: declare what a stage consumes and produces.

Calling a decorated stage inside `run()` does not execute it: it adds a (record, stage) node to
the manager's graph, puts references to the stage's future outputs into `record.state`, and
returns the record so calls chain (`evaluate(train(load(record)))`). The runner executes the
graph afterwards.
"""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from curifactory_cli.caching import Cacheable, Lazy, PickleCacher
from curifactory_cli.errors import (
    CachersMismatchError,
    EmptyCachersError,
    GraphError,
    InputSignatureError,
    MissingInputError,
)
from curifactory_cli.graph import Node, OutputRef
from curifactory_cli.names import check_name
from curifactory_cli.record import Record

if TYPE_CHECKING:
    from curifactory_cli.record import TracingManager


@dataclass(eq=False)
class StageSpec:
    """A stage as declared by its decorator."""

    fn: Callable[..., Any]
    inputs: list[str]
    outputs: list[str | Lazy]
    cachers: list[type[Cacheable] | Cacheable] | None
    suppress_missing_inputs: bool = False
    is_aggregate: bool = False
    depends_on: list[str] = field(default_factory=list)  # files it reads (globs), key part
    # "all": keyed on the whole parameter set, never shared between sets (engine.sharing)
    params: str | None = None
    # Dask worker resources a call needs ({"GPU": 1}) on a batch cluster; not a key part:
    # where a call runs does not change what it computes.
    resources: dict[str, float] | None = None
    _checked: bool = False

    @functools.cached_property
    def name(self) -> str:  # read on every decision: computed once
        return self.fn.__name__

    @property
    def ref(self) -> str:
        """Importable reference `module:qualname`, used to hand a job to another process."""
        return f"{self.fn.__module__}:{self.fn.__qualname__}"

    def check(self) -> None:
        """Validate the declaration once, at its first call (so errors name the stage)."""
        if self._checked:
            return
        self._check_names()
        if self.cachers is not None:
            self._check_cachers(self.cachers)
        self._check_inputs()
        self._checked = True

    def _check_names(self) -> None:
        name = self.name
        check_name(name, "stage", name)
        for out in self.outputs:
            check_name(str(out), "output", name)
        if len({str(o) for o in self.outputs}) != len(self.outputs):
            raise GraphError(f"stage {name!r}: an output name is listed twice")

    def _check_cachers(self, cachers: list[type[Cacheable] | Cacheable]) -> None:
        """One Cacheable class or instance per output."""
        name = self.name
        if len(cachers) == 0:
            raise EmptyCachersError(
                f"stage {name!r} has an empty cachers list",
                hint="use cachers=None for a stage whose outputs stay in memory.",
            )
        if len(cachers) != len(self.outputs):
            raise CachersMismatchError(
                f"stage {name!r} declares {len(self.outputs)} output(s) but "
                f"{len(cachers)} cacher(s)",
                hint="give exactly one cacher per output, in the same order.",
            )
        for cacher in cachers:
            ok = isinstance(cacher, Cacheable) or (
                isinstance(cacher, type) and issubclass(cacher, Cacheable)
            )
            if not ok:
                raise GraphError(
                    f"stage {name!r}: cacher {cacher!r} is not a Cacheable class or instance",
                    hint="subclass curifactory_cli.caching.Cacheable.",
                )

    def _check_inputs(self) -> None:
        """Each input is a parameter of the function (or it takes **kwargs)."""
        name = self.name
        params = inspect.signature(self.fn).parameters
        takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        for input_name in self.inputs:
            if not isinstance(input_name, str):
                raise GraphError(f"stage {name!r}: input names must be strings, got {input_name!r}")
            if input_name not in params and not takes_kwargs:
                raise InputSignatureError(
                    f"stage {name!r} lists input {input_name!r} but its function has no "
                    f"parameter of that name",
                    hint=f"add `{input_name}` to the signature of {name}().",
                )

    def effective_outputs(
        self, manager: TracingManager
    ) -> tuple[list[tuple[str, Lazy | None]], Any]:
        """Output names with their Lazy declaration, and the cachers, after --lazy/--ignore-lazy.

        Computed per call so command-line modes never mutate the decorator's own lists.
        """
        outputs: list[tuple[str, Lazy | None]] = []
        for out in self.outputs:
            lazy = out if isinstance(out, Lazy) else None
            if manager.ignore_lazy:
                lazy = None
            elif manager.lazy and lazy is None:
                lazy = Lazy(str(out))
            outputs.append((str(out), lazy))
        cachers = self.cachers
        if cachers is None and any(lazy for _, lazy in outputs):
            # Lazy outputs live only in the cache: an uncached stage gets pickle cachers.
            cachers = [PickleCacher] * len(outputs)
        return outputs, cachers

    def default_of(self, input_name: str) -> Any:
        param = inspect.signature(self.fn).parameters.get(input_name)
        if param is None or param.default is inspect.Parameter.empty:
            raise InputSignatureError(
                f"stage {self.name!r}: input {input_name!r} is missing and "
                "suppress_missing_inputs=True, but the function gives it no default",
                hint=f"give `{input_name}` a default value in {self.name}().",
            )
        return param.default


def _missing_signature_inputs(
    function: Callable[..., Any], input_names: list[str], function_inputs: dict[str, Any]
) -> tuple[list[str], list[str]]:
    """Curifactory's check of a stage's inputs against its function (ported, BSD-3): the
    input names its signature lacks, and the inputs that have no default and no value in
    `function_inputs` (which fail even with suppress_missing_inputs)."""
    parameters = inspect.signature(function).parameters
    missing = [name for name in input_names if name not in parameters]
    no_defaults = [
        name
        for name, parameter in parameters.items()
        if name in input_names
        and parameter.default is inspect.Parameter.empty
        and name not in function_inputs
        and name not in missing
    ]
    return missing, no_defaults


# Every declared stage, so a missing input can name the stages that would produce it.
_DECLARED: weakref.WeakSet[StageSpec] = weakref.WeakSet()


def _missing_input(spec: StageSpec, record: Record, name: str) -> MissingInputError:
    have = ", ".join(sorted(record.state)) or "nothing yet"
    return MissingInputError(
        f"stage {spec.name!r} needs input {name!r} for parameter set {record.name!r}, but no "
        f"earlier stage produced it (the record has: {have})",
        hint=_missing_input_hint(spec, name),
    )


def _missing_input_hint(spec: StageSpec, name: str) -> str:
    """What would produce the input: the stages that declare it (or the cycle they form
    with this one), else passing it by hand."""
    producers = sorted({s.name for s in _DECLARED if name in {str(o) for o in s.outputs}})
    own_outputs = {str(o) for o in spec.outputs}
    cycle = sorted(s.name for s in _DECLARED if s.name in producers and set(s.inputs) & own_outputs)
    if cycle:
        return (
            f"{cycle[0]} produces {name!r} but needs an output of {spec.name}: the two stages "
            "form a cycle; one of them must not depend on the other."
        )
    if producers:
        return f"call {' or '.join(producers)} before {spec.name} on this record."
    return f"no stage declares an output {name!r}; pass it as {spec.name}(record, {name}=...)."


def _trace(
    spec: StageSpec,
    record: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    records: list[Record] | None = None,
) -> Record:
    """A stage call as a node of the manager's graph, its outputs as references in the
    record's state; nothing runs here."""
    if not isinstance(record, Record):
        msg = f"stage {spec.name!r} was called with {type(record).__name__!s} instead of a Record"
        raise GraphError(msg, hint="call stages as `stage(record)` on a cf.Record.")
    spec.check()
    manager = record.manager
    outputs, cachers = spec.effective_outputs(manager)
    if args:
        kwargs = {**kwargs, "__args__": args}
    inputs: dict[str, Any] = {}
    aggregate_inputs: dict[str, list[tuple[Record, OutputRef]]] = {}
    if spec.is_aggregate:
        aggregate_inputs = _aggregate_inputs(spec, record, records)
    else:
        inputs = _inputs(spec, record, kwargs)
    node = Node(
        index=len(manager.graph.nodes),
        stage=spec,
        record=record,
        inputs=inputs,
        aggregate_inputs=aggregate_inputs,
        kwargs=kwargs,
        cacher_templates=cachers,
    )
    _link_upstream(node)
    _publish_outputs(node, record, outputs)
    manager._add_node(node)
    return record


def _inputs(spec: StageSpec, record: Record, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Each input from the call's keywords (taken out of `kwargs`), else from the record's
    state; a missing one is an error unless the stage suppresses it (then its default)."""
    inputs: dict[str, Any] = {}
    for name in spec.inputs:
        if name in kwargs:
            inputs[name] = kwargs.pop(name)
        elif name in record.state:
            inputs[name] = record.state.raw(name)
        elif spec.suppress_missing_inputs:
            spec.default_of(name)  # validates that the default exists
        else:
            raise _missing_input(spec, record, name)
    return inputs


def _aggregate_inputs(
    spec: StageSpec, record: Record, records: list[Record] | None
) -> dict[str, list[tuple[Record, OutputRef]]]:
    """For each input, the covered records that have it (every other record by default)."""
    if records is None:
        records = [r for r in record.manager.records if r is not record]
    record._set_aggregate(records)
    return {
        name: [(r, r.state.raw(name)) for r in records if name in r.state] for name in spec.inputs
    }


def _link_upstream(node: Node) -> None:
    """Count the node among its producers' consumers and dependants."""
    for ref in node.upstream():
        ref.node.consumers += 1
        dependants = ref.node.dependants
        if not dependants or dependants[-1] != node.index:  # this node's refs come together
            dependants.append(node.index)
            node.producers += 1


def _publish_outputs(node: Node, record: Record, outputs: list[tuple[str, Lazy | None]]) -> None:
    """References to the node's future outputs in the record's state and `record.output`."""
    node.outputs = [OutputRef(node, name, lazy) for name, lazy in outputs]
    for ref in node.outputs:
        dict.__setitem__(record.state, ref.name, ref)
    record.stages.append(node.stage.name)
    if len(node.outputs) == 1:
        record.output = node.outputs[0]
    elif node.outputs:
        record.output = tuple(node.outputs)


def _listed(value: Any, what: str, fn: Callable[..., Any]) -> list[Any]:
    """A declaration argument that must be a list (a single cacher class, or one string,
    given bare is the usual slip)."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    shown = getattr(value, "__name__", None) or repr(value)
    raise GraphError(
        f"stage {fn.__name__!r}: {what} must be a list, not {shown}",
        hint=f"write {what}=[{shown}] (one item per {'output' if what == 'cachers' else what}).",
    )


def stage(
    inputs: list[str] | None = None,
    outputs: list[str | Lazy] | None = None,
    cachers: list[type[Cacheable] | Cacheable] | None = None,
    suppress_missing_inputs: bool = False,
    depends_on: list[str] | None = None,
    params: str | None = None,
    resources: dict[str, float] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Record]]:
    """Declare a stage: `fn(record, <one argument per input>)` returns one value per output.

    Args:
        inputs: names of artifacts in the record's state that the function receives.
        outputs: names (or `Lazy(name)`) of the values it returns, a tuple for several.
        cachers: one cacher per output (a class or an instance); None keeps outputs in memory.
        suppress_missing_inputs: use the function's default for inputs that are not present.
        depends_on: files the stage reads, relative to the project root (globs allowed):
            their contents are part of its cache key.
        params: "all" keys the stage on its whole parameter set, as Curifactory does: its
            entries serve no other set. By default a call is keyed on the parameters it
            reads, and shares its entry with sets that have the same values there.
    """

    def decorator(fn: Callable[..., Any]) -> Callable[..., Record]:
        if params not in (None, "all"):
            raise GraphError(
                f"stage {fn.__name__!r}: params={params!r} is not a choice",
                hint='leave it out (keys over what the stage reads) or give params="all" (keys '
                "over the whole parameter set).",
            )
        spec = StageSpec(
            fn,
            _listed(inputs, "inputs", fn),
            _listed(outputs, "outputs", fn),
            None if cachers is None else _listed(cachers, "cachers", fn),
            suppress_missing_inputs,
            depends_on=[str(p) for p in _listed(depends_on, "depends_on", fn)],
            params=params,
            resources=_resources(resources, fn),
        )
        _DECLARED.add(spec)

        @functools.wraps(fn)
        def wrapper(record: Record, *args: Any, **kwargs: Any) -> Record:
            return _trace(spec, record, args, kwargs)

        wrapper.__curi_stage__ = spec  # type: ignore[attr-defined] # marks a stage function
        return wrapper

    return decorator


def _resources(given: Any, fn: Callable[..., Any]) -> dict[str, float] | None:
    """`resources=` checked: names to amounts (Dask worker resources are numbers)."""
    if not given:
        return None
    if not isinstance(given, dict) or not all(
        isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
        for k, v in given.items()
    ):
        raise GraphError(
            f"stage {fn.__name__!r}: resources={given!r} must map names to numbers",
            hint='e.g. resources={"GPU": 1}; workers declare theirs in [tool.curi.slurm] '
            "resources.",
        )
    return {k: float(v) for k, v in given.items()}


def aggregate(
    inputs: list[str] | None = None,
    outputs: list[str | Lazy] | None = None,
    cachers: list[type[Cacheable] | Cacheable] | None = None,
    depends_on: list[str] | None = None,
    resources: dict[str, float] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Record]]:
    """Declare a stage over many records: `fn(record, records, <input>: dict[Record, value])`.

    Call it on `cf.Record(manager, None)`; it covers every other record of the manager unless
    `records=[...]` is given. Each input maps the records that have it to their value.
    """

    def decorator(fn: Callable[..., Any]) -> Callable[..., Record]:
        spec = StageSpec(
            fn,
            _listed(inputs, "inputs", fn),
            _listed(outputs, "outputs", fn),
            None if cachers is None else _listed(cachers, "cachers", fn),
            is_aggregate=True,
            depends_on=[str(p) for p in _listed(depends_on, "depends_on", fn)],
            resources=_resources(resources, fn),
        )
        _DECLARED.add(spec)

        @functools.wraps(fn)
        def wrapper(record: Record, records: list[Record] | None = None, **kwargs: Any) -> Record:
            return _trace(spec, record, (), kwargs, records=records)

        wrapper.__curi_stage__ = spec  # type: ignore[attr-defined] # marks a stage function
        return wrapper

    return decorator
