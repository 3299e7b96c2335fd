"""The engine: keys, the decision procedure, the scheduler, and the jobs it hands to runners.

keys       -> the data key and lineage key of a stage call
decide     -> one stage call's decision (cached / run / defer / need its inputs) and why
scheduler  -> the ready-set walk over the graph that a run is (node_states: where each
              call stands; dispatch: running requested calls, entry locks, results)
planner    -> the same walk with nothing executed: what a run would do
jobs       -> the picklable job a runner executes; execute: `run_job` that executes it
runners    -> in-process, worker processes, Dask
"""
