"""Making a job: the plain-data description of running one stage call now, with each input
given as an entry to load (in this process, or where the job runs) or as a value."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from curifactory_cli.caching import Lazy
from curifactory_cli.engine.jobs import InputEntry, InputValue, Job
from curifactory_cli.graph import Node, OutputRef
from curifactory_cli.record import _CachedOutput
from curifactory_cli.store import CorruptEntryError

if TYPE_CHECKING:
    from curifactory_cli.engine.commit import Committer
    from curifactory_cli.store.base import Store
    from curifactory_cli.store.ref import RemoteRef


class InputDamaged(Exception):
    """An input's entry could not be fetched intact: (input, producer, message, hint)."""


class JobMaker:
    """Makes the jobs of one run."""

    def __init__(
        self,
        store: Store,
        committer: Committer,
        experiment: str,
        code_root: str,
        lineage: Callable[[Node], str],
        fresh: set[int],
        shares_files: bool,
        whole_params: bool = False,
    ) -> None:
        self.store = store
        self.committer = committer
        self.experiment = experiment
        self.code_root = code_root
        self._lineage = lineage
        self.fresh = fresh  # stage calls executed in this run (their entries are verified)
        self.shares_files = shares_files  # the runner's workers see this machine's files
        self.whole_params = whole_params  # [tool.curi] params = "all": no stage gets a view
        self.run_dir: str | None = None  # the run's own folder (set once the run is recorded)

    def _source(self, ref: OutputRef, here: bool) -> InputEntry | InputValue:
        value = ref.value
        if isinstance(value, _CachedOutput) and value.loaded and here:
            return InputValue(value.value)
        if isinstance(value, (_CachedOutput, Lazy)):
            producer = ref.node
            i = producer.outputs.index(ref)
            directory = str(producer.entry_dir)
            if here or self.shares_files:
                try:
                    self.store.materialize(directory)
                except CorruptEntryError as exc:
                    raise InputDamaged(ref.name, producer.index, exc.message, exc.hint) from None
            return InputEntry(
                producer=producer.index,
                stage=producer.stage.name,
                directory=directory,
                output=ref.name,
                cacher=producer.cacher_templates[i],  # type: ignore[index] # it has an entry
                info=self.committer.info[producer.index][ref.name],
                lazy=ref.lazy,
                verified=producer.index in self.fresh,
                remote=self.store.remote_ref(directory),
            )
        return InputValue(value)

    def job(self, node: Node, here: bool) -> Job:
        """The plain-data description of running `node` now (`here`: in this process)."""
        record = node.record
        # Inputs first: a damaged one (InputDamaged) stops here, before anything is named.
        inputs = tuple((name, self._given(src, here)) for name, src in node.inputs.items())
        aggregate = self._aggregate_inputs(node, here) if node.aggregate_inputs else ()
        assert node.key is not None
        # (--dry keeps a draft folder as it is: its paths stay valid for the run)
        published = node.is_cached_stage and not self.store.dry
        return Job(
            index=node.index,
            stage_ref=node.stage.ref,
            stage_name=node.stage.name,
            experiment=self.experiment,
            record=self.committer.record_info(record),
            key=node.key,
            lineage_key=self._lineage(node),
            draft=self.store.draft_path() if node.is_cached_stage else None,
            code_root=self.code_root,
            run_dir=None if node.is_cached_stage else self.run_dir,
            entry_dir=str(node.entry_dir) if published else None,
            outputs=tuple(ref.name for ref in node.outputs),
            lazy=tuple(ref.lazy is not None for ref in node.outputs),
            cachers=None if node.cacher_templates is None else tuple(node.cacher_templates),
            kwargs=dict(node.kwargs),
            is_aggregate=node.stage.is_aggregate,
            inputs=inputs,
            aggregate_inputs=aggregate,
            input_records=tuple(map(self.committer.record_info, record.input_records)),
            # With --dry the entry is gone after the run: values come back to the record.
            ship_values=here or self.store.dry,
            whole_params=self.whole_params or node.stage.params == "all",
            upload=self._upload(node, here) if published else None,
            resources=node.stage.resources,
        )

    def _given(self, src: Any, here: bool) -> InputEntry | InputValue:
        """An input as the job gets it: another call's output (see _source), or a value."""
        return self._source(src, here) if isinstance(src, OutputRef) else InputValue(src)

    def _aggregate_inputs(self, node: Node, here: bool) -> tuple[Any, ...]:
        """An aggregate's inputs: name -> (position in its input records, source) for each
        record that has it."""
        positions = {id(r): i for i, r in enumerate(node.record.input_records)}
        return tuple(
            (name, tuple((positions[id(rec)], self._given(src, here)) for rec, src in pairs))
            for name, pairs in node.aggregate_inputs.items()
        )

    def _upload(self, node: Node, here: bool) -> RemoteRef | None:
        """Where the job uploads its outputs itself: a worker on another machine does; on
        this machine the store uploads them in batches once published."""
        if here or self.shares_files:
            return None
        return self.store.remote_ref(str(node.entry_dir))
