"""`Record` (one parameter set's state as stages pass over it) and `TracingManager`, the
manager `curi run` hands to run(): it records stage calls into a graph (a notebook's
`manager.ArtifactManager` builds on it and runs each call at once)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from curifactory_cli.caching import Lazy, PathRef
from curifactory_cli.capture import report_progress
from curifactory_cli.discovery import DEFAULT_CACHE
from curifactory_cli.errors import CacheError, MetricError
from curifactory_cli.graph import NOT_COMPUTED, Graph, Node, OutputRef
from curifactory_cli.hashing import combine_hashes, hash_params
from curifactory_cli.parameters.reads import read_whole
from curifactory_cli.run_paths import RunPaths

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from curifactory_cli.caching import Cacheable


class CacheAwareDict(dict):
    """A record's state: artifacts by output name.

    Reading an entry gives its value: a cached output is loaded on first read, and a `Lazy`
    output is loaded through its cacher on every read (unless `resolve` is off), so large
    objects stay out of memory between the stages that use them.
    """

    resolve = True

    def __getitem__(self, key: str) -> Any:
        item = dict.__getitem__(self, key)
        if isinstance(item, OutputRef):
            item = _ref_value(item)
        if isinstance(item, Lazy) and self.resolve and item.resolve:
            return item.load()
        return item

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default  # noqa: SIM401 - must load via []

    def raw(self, key: str) -> Any:
        """The stored entry itself (an artifact reference or a Lazy), without loading."""
        return dict.__getitem__(self, key)

    def __repr__(self) -> str:
        # As a dict of the values (Curifactory prints `{'initial_value': 5.0}`): cached
        # outputs are loaded to be shown; a Lazy one and one not computed yet say so.
        shown = []
        for key, item in dict.items(self):
            if isinstance(item, OutputRef) and item.value is NOT_COMPUTED:
                text = f"<{item.node.stage.name} not run yet>"
            else:
                value = _ref_value(item) if isinstance(item, OutputRef) else item
                text = f"Lazy({value.name!r})" if isinstance(value, Lazy) else repr(value)
            shown.append(f"{key!r}: {text}")
        return "{" + ", ".join(shown) + "}"


def _settle_now(ref: OutputRef) -> None:
    """run() reads an output while it is traced: under `curi run`, settle it now."""
    demand = getattr(ref.node.record.manager, "_demand", None)
    if demand is not None and ref.node.outcome is None:
        demand(ref.node)


def _ref_value(ref: OutputRef) -> Any:
    if ref.value is NOT_COMPUTED:
        _settle_now(ref)
    value = ref.value
    if value is NOT_COMPUTED:
        msg = (
            f"{ref.name!r} of stage {ref.node.stage.name!r} ({ref.node.record_name}) was not "
            "computed: no stage that ran needed it"
        )
        raise CacheError(msg, hint=f"list {ref.name!r} in the inputs of the stage that reads it.")
    if isinstance(value, _CachedOutput):
        return value.get()
    return value


def _output_value(item: Any) -> Any:
    if not isinstance(item, OutputRef) or item.value is NOT_COMPUTED:
        return item  # while run() is being traced, the reference itself
    if isinstance(item.value, _CachedOutput):
        return item.value.get()
    return item.value  # a Lazy output stays a Lazy, as in Curifactory


class _CachedOutput:
    """A cached, not-yet-loaded output of a stage that did not need to run."""

    __slots__ = ("_cacher", "_make", "keep", "loaded", "value")

    def __init__(self, cacher: Cacheable | Callable[[], Cacheable], keep: bool) -> None:
        # A cached run reads few of its outputs: the cacher is made when one is read.
        self._cacher: Cacheable | None = None
        self._make: Callable[[], Cacheable] | None = None
        if callable(cacher):
            self._make = cacher
        else:
            self._cacher = cacher
        self.keep = keep  # memoise after the first load (plain outputs); Lazy ones never are
        self.loaded = False
        self.value: Any = None

    @property
    def cacher(self) -> Cacheable:
        if self._cacher is None:
            assert self._make is not None
            self._cacher, self._make = self._make(), None
        return self._cacher

    def get(self) -> Any:
        if self.loaded:
            return self.value
        value = self.cacher._curi_loader()  # type: ignore[attr-defined] # set by engine.execute
        if self.keep:
            self.value, self.loaded = value, True
        return value


class Record:
    """One parameter set's state as stages pass over it (Curifactory's `Record`).

    Args:
        manager: the `ArtifactManager` that `run()` received.
        params: a parameter set from `param_sets`, or None for an aggregate record.
        hide: do not add the record to `manager.records`.
    """

    def __init__(self, manager: TracingManager, params: Any, hide: bool = False) -> None:
        self.manager = manager
        self.params = params
        self.state = CacheAwareDict()
        self._output: Any = None
        self.input_records: list[Record] = []
        self.is_aggregate = False
        self.stages: list[str] = []
        self.stage_cachers: list[Cacheable] | None = None
        self.reportables: list[Any] = []
        self._hash: str | None = None
        self._combo_hash: str | None = None
        self._draft: Any = None  # the running stage's draft folder, set by run_job
        # The run's own folder (data/runs/<reference>), set by run_job: where a stage without
        # cachers writes the files it asks get_path() for.
        self._run_dir: str | None = None
        self._paths_given = False  # get_path()/get_dir() used since run_job reset it
        self._running_stage: str | None = None  # its name (record.stages is the traced list)
        self._call_metrics: dict[str, Any] = {}  # the running call's metrics (a new dict each)
        # What the running aggregate call reads of its records' sets (engine.execute): its
        # hash over them is made from all of them.
        self._covered_reads: Any = None
        self._watched = False  # an aggregate running over this record reads its set
        self.index = -1
        every = getattr(manager, "_every_record", None)
        if every is not None:
            every.append(self)
        if not hide:
            self.index = len(manager.records)
            manager.records.append(self)
        if getattr(params, "hash", False) is None and hasattr(params, "params_hash"):
            params.hash = self.get_hash()  # as Curifactory: the set shows its hash

    @property
    def output(self) -> Any:
        """What the record's last stage returned (a tuple for several outputs), once it ran."""
        refs = self._output
        if isinstance(refs, tuple):
            return tuple(_output_value(r) for r in refs)
        return _output_value(refs)

    @output.setter
    def output(self, value: Any) -> None:
        self._output = value

    @property
    def name(self) -> str:
        if self.params is None:
            return "aggregate" if self.is_aggregate else "None"
        return str(getattr(self.params, "name", "UNNAMED"))

    def get_hash(self) -> str:
        """The parameter hash that names this record's cache folder."""
        if self._combo_hash is not None:
            if self._covered_reads is not None:
                self._covered_reads.everything = True
            return self._combo_hash
        if self._hash is None:
            self._hash = self.manager._params_hash(read_whole(self.params))
        elif self._running_stage is not None or self._watched:
            read_whole(self.params)  # in a call (given a view of the set): the whole set
        return self._hash

    def _set_aggregate(self, records: list[Record]) -> None:
        self.is_aggregate = True
        self.input_records = list(records)
        own = self.manager._params_hash(self.params) if self.params is not None else "None"
        self._combo_hash = combine_hashes(own, [r.get_hash() for r in records])

    @property
    def combo_hash(self) -> str | None:
        """An aggregate's hash over the records it covers (Curifactory's; None otherwise)."""
        if self._covered_reads is not None:
            self._covered_reads.everything = True
        return self._combo_hash

    @combo_hash.setter
    def combo_hash(self, value: str | None) -> None:
        self._combo_hash = value

    def get_reference_name(self) -> str:
        return f"Record {self.index} ({self.name})"

    def make_copy(self, param_set: Any = None, add_to_manager: bool = True) -> Record:
        """A new record with this one's state (its artifacts) and optionally other params."""
        # A copy made inside a stage carries the set away from the view: read in full.
        params = read_whole(self.params if param_set is None else param_set)
        child = Record(self.manager, params, hide=True)
        if add_to_manager:
            child.index = len(self.manager.records)
            self.manager.records.append(child)
        for key in self.state:
            dict.__setitem__(child.state, key, self.state.raw(key))
        child.input_records = [self]
        return child

    def get_path(
        self,
        obj_name: str,
        subdir: str | None = None,
        prefix: str | None = None,
        stage_name: str | None = None,
        track: bool = True,
    ) -> str:
        """A path for an extra file written by the running stage.

        In a stage with cachers it is published with the stage's cache entry (and
        checksummed), like the files its cachers write: the stage writes into a draft folder
        that becomes the entry's folder when its outputs are published, and a path the stage
        returns (also inside a list, tuple or dict) is rewritten to the published place, so it
        stays valid downstream and on cached runs. `subdir` nests the file in folders and
        `prefix` is put before its name (`<prefix>_<obj_name>`), inside the entry;
        `stage_name` may only name the running stage (another stage's files are in that
        stage's entry). The name of an output whose cacher is a `PathRef` gives that cacher's
        path, as in Curifactory.

        Elsewhere (a stage without cachers, which has no entry, or outside a stage) the path
        is in the run's own folder, `data/runs/<reference>/[<subdir>/]`, under Curifactory's
        file name `<prefix or experiment>_<parameter hash>_<stage>_<obj_name>`: each run
        writes its own files there, nothing is served from it later. `track` chooses what
        Curifactory's --store-full copies; here --store-full copies whole entries, and the
        run's folder is the store's.
        """
        self._paths_given = True  # the runner then looks for staged paths in returned values
        from curifactory_cli.names import check_name

        running = self._current_stage() or "?"
        folders = subdir.split("/") if subdir else []
        if self._draft is None:
            name = self.manager.get_artifact_filename(obj_name, self, prefix, stage_name)
            for part in [*folders, name]:
                check_name(part, "file", running)
            base = os.path.join(self._run_dir or self.manager._run_folder(), *folders)
            os.makedirs(base, exist_ok=True)
            return os.path.join(base, name)
        if stage_name is not None and stage_name != running:
            raise CacheError(
                f"record.get_path({obj_name!r}, stage_name={stage_name!r}) in stage "
                f"{running!r}: a stage only writes into its own cache entry",
                hint=f"to read what {stage_name!r} wrote, list that output in the inputs "
                "(Lazy(name, resolve=False) passes its cacher, whose get_path() is the file).",
            )
        if prefix is None and not subdir:
            ref_path = self._path_ref_named(obj_name)
            if ref_path is not None:
                return ref_path
        name = obj_name if prefix is None else f"{prefix}_{obj_name}"
        for part in [*folders, name]:
            check_name(part, "file", running)
        base = os.path.join(str(self._draft), "files", *folders)
        os.makedirs(base, exist_ok=True)
        return os.path.join(base, name)

    def _own_hash(self) -> str:
        """The record's hash (an aggregate's over its records) as a file name part: inside a
        stage call, known without reading the set through its view."""
        if self._combo_hash is not None:
            return self._combo_hash
        return self._hash if self._hash is not None else self.get_hash()

    def _path_ref_named(self, obj_name: str) -> str | None:
        """The path of the running stage's PathRef cacher whose file is `obj_name`: as in
        Curifactory, `record.get_path("model_path")` is where a PathRef output goes."""
        for cacher in self.stage_cachers or ():
            if isinstance(cacher, PathRef):
                path = cacher.get_path()
                if os.path.basename(path) == obj_name:
                    return path
        return None

    def get_dir(
        self,
        dir_name_suffix: str,
        subdir: str | None = None,
        prefix: str | None = None,
        stage_name: str | None = None,
        track: bool = True,
    ) -> str:
        """Like get_path(), but creates and returns a directory."""
        path = self.get_path(dir_name_suffix, subdir, prefix, stage_name, track)
        os.makedirs(path, exist_ok=True)
        return path

    def report(self, reportable: Any) -> None:
        """Add a reportable (`curifactory_cli.reporting`) to this record, from inside a stage.

        It is titled as in Curifactory: `[(Aggregate)_][<set name>_]<stage>_<name or number>`.
        """
        if not callable(getattr(reportable, "html", None)):
            raise TypeError(
                f"record.report() takes a Reportable (see curifactory_cli.reporting), "
                f"not {type(reportable).__name__}: wrap text in HTMLReporter or JsonReporter"
            )
        reportable.record = self
        reportable.stage = self._current_stage()
        bind = getattr(reportable, "_curi_bind_metrics", None)
        if callable(bind):  # a MetricReporter of the call's own metrics: they are these
            bind(self._call_metrics)
        prefix = "(Aggregate)_" if self.is_aggregate else ""
        if self.params is not None:
            prefix += f"{getattr(self.params, 'name', '')}_"
        prefix += f"{reportable.stage}_"
        name = getattr(reportable, "name", None)
        reportable.qualified_name = prefix + (str(len(self.reportables)) if name is None else name)
        self.reportables.append(reportable)

    def metric(self, name: str, value: Any) -> None:
        """Record a named scalar metric of the running stage call (int, float, bool or a
        numpy scalar; the last value of a name counts). It is kept with the call's cache
        entry and in the run registry: `curi metrics` tables them across sets and runs."""
        from curifactory_cli.metrics import metric_value

        stage = self._running_stage
        where = f"stage {stage!r} (parameter set {self.name!r})"
        if stage is None:
            raise MetricError(
                f"record.metric({name!r}) outside a stage (parameter set {self.name!r})",
                hint="record metrics from the body of the stage that computes them.",
            )
        key, plain = metric_value(name, value, where)
        self._call_metrics[key] = plain

    def metrics(self, values: Any) -> None:
        """Record several metrics at once: `record.metrics({"acc": 0.9, "loss": 0.3})`."""
        items = getattr(values, "items", None)
        if not callable(items):
            raise MetricError(
                f"record.metrics() takes a mapping of names to numbers, not "
                f"{type(values).__name__} (stage {self._running_stage!r}, parameter set "
                f"{self.name!r})",
                hint="pass a dict, or call record.metric(name, value) for one metric.",
            )
        for name, value in items():
            self.metric(name, value)

    def progress(self, done: float, total: float | None = None) -> None:
        """Say how far the running stage is (`done` of `total` steps; `total` may be left out):
        shown in the live display, in the `running` lines of a log, and with `-j` or Dask.
        Cheap enough to call on every step: at most four updates a second are sent."""
        report_progress(done, total)

    def _current_stage(self) -> str:
        """The stage running now; outside one, the last stage traced on this record."""
        return self._running_stage or (self.stages[-1] if self.stages else "")

    def __repr__(self) -> str:
        return f"Record({self.name!r})"


class TracingManager(RunPaths):
    """What `run(param_sets, manager)` receives: owns the records and the traced stage graph.

    Stage calls made while `run()` executes are recorded as graph nodes; the runner then
    executes that graph, reusing the cache.
    """

    def __init__(
        self,
        experiment_name: str = "experiment",
        *,
        dry: bool = False,
        lazy: bool = False,
        ignore_lazy: bool = False,
        overwrite: bool = False,
        overwrite_stages: list[str] | None = None,
        cache_path: str = DEFAULT_CACHE,
        param_hashes: dict[int, str] | None = None,
    ) -> None:
        self.experiment_name = experiment_name
        self.dry = dry
        self.lazy = lazy
        self.ignore_lazy = ignore_lazy
        self.overwrite = overwrite
        self.overwrite_stages = list(overwrite_stages or [])
        self.cache_path = cache_path
        self.records: list[Record] = []
        self._every_record: list[Record] = []  # hidden ones (hide=True, copies) too
        # Curifactory's record of the parameter files of a run (set by run_experiment).
        self.parameter_files: list[str] = []
        self.param_file_param_sets: dict[str, list[tuple[str, str]]] = {}
        self.graph = Graph()
        self._param_hashes = dict(param_hashes or {})
        # Set by `curi run` while run() is traced: settles a stage call whose output run()
        # reads (and what it needs) at once, instead of after tracing.
        self._demand: Any = None
        RunPaths.__init__(self)

    def _params_hash(self, params: Any) -> str:
        if params is None:
            return "None"
        known = self._param_hashes.get(id(params))
        if known is None:
            known = hash_params(params, f"parameter set {getattr(params, 'name', '?')!r}")
            self._param_hashes[id(params)] = known
        return known

    def _add_node(self, node: Node) -> None:
        self.graph.nodes.append(node)

    @property
    def reportables(self) -> list[Any]:
        """Every reportable of the manager's records (hidden ones too), record by record: those
        reported by the stages that ran, and the cached ones put back on a cache hit."""
        return [reportable for r in self._every_record for reportable in r.reportables]

    def generate_report(self) -> Path | None:
        """Curifactory's call at the end of run(): under `curi run` the run's report is
        written when the run ends (unless --no-report), with every stage's outcome, so there
        is nothing to do here."""
        return None
