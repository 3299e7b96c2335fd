"""Why a ported Curifactory test is skipped: each names a deliberate difference that README.md
documents (section "Compatibility with Curifactory"), in one place for all the test files."""

LAYOUT = (
    "Curifactory's cache file names (<prefix>_<hash>_<stage>_<output>.<ext> in cache_path): "
    "curi's cache layout is its own, data/cache/<experiment>/<hash>/<stage>-<key>/"
)
REGISTRY = (
    "params_registry.json, store.json and manager_cache_path: curi keeps runs and parameter "
    "sets in its run registry (curi runs ls / show)"
)
STORE_FULL = (
    "Curifactory's --store-full run folder (runs_path/<name>_<n>_<timestamp>/artifacts, "
    "run_info.json, manager.store()): curi's --store-full copies whole entries to "
    "data/runs/<reference>/, from `curi run` only"
)
MANAGER_PATHS = (
    "Curifactory's artifact paths are files of the cache folder that curifactory_config.json "
    "names (test/examples/data/cache/<prefix>_<hash>_<stage>_<name>): curi's "
    "manager.get_artifact_path() gives the same file name in the run's own folder "
    "(data/runs/<reference>/), or a file of the running stage's cache entry in a stage with "
    "cachers; nothing is written into the cache outside an entry"
)
RUNS_PATH = (
    "Curifactory's run folder is under the runs_path that curifactory_config.json names "
    "(test/examples/data/runs/<experiment>_<n>_<timestamp>): curi's is the same folder name "
    "under data/runs in the project (curifactory_config.json is not read)"
)
CONFIG = "curifactory_config.json is not read: curi's settings live in curi.toml or [tool.curi]"
DAG = (
    "Curifactory's DAG internals (map_mode, map_records(), manager.map, execution_list, "
    "artifacts[i].cached): curi traces run() once into its own stage graph, and `curi plan` "
    "shows what would run"
)
ARTIFACTS = (
    "Curifactory's artifact bookkeeping (manager.artifacts, record.state_artifact_reps): "
    "curi's record.state refers into its stage graph (manager.graph)"
)
PATH_OVERRIDE = (
    "a path_override in a stage's cachers: the cacher saves into the stage's cache entry (in "
    "the stage, its get_path() is the entry's file) and curi keeps a verified copy at the "
    "path once the entry is published; Curifactory's tests check the path the stage itself "
    "sees, and a _metadata.json beside the file (curi keeps metadata in the entry)"
)
STAGE_ERROR = (
    "a stage that raises raises curi's StageError (the original exception chained), naming "
    "the stage and the parameter set"
)
LAZY_PICKLE = (
    "a Lazy output of a stage without cachers gets a PickleCacher, where Curifactory raises "
    "OutputSignatureError"
)
NO_CACHERS_GET_PATH = (
    "record.get_path() in a stage without cachers gives Curifactory's file name in the run's "
    "own folder (data/runs/<reference>/), not in the cache folder: such a stage has no cache "
    "entry, and nothing is written into the cache outside an entry"
)
NUMBERING = (
    "an unnamed reportable is numbered within its record, not across the run, so titles do "
    "not depend on the order in which parallel stages finish"
)
ESCAPED = (
    "reportables escape their text for HTML, so data cannot break the page: LaTeX's & is "
    "&amp; in the page's source"
)
REPORT = (
    "Curifactory's report internals (render_report_argset_dump, render_reportable, graphviz "
    "subgraphs, reports_path with its style.css): curi's report is its own, its stage graph "
    "drawn without graphviz"
)
MNGR = (
    "run_experiment(mngr=...): curi makes the run's manager; interactively, "
    "cf.ArtifactManager(...) runs each stage call at once"
)
MANAGER_ARGS = (
    "checks the arguments Curifactory's run_experiment gives its own ArtifactManager "
    "(run_line, parallel_lock, prefix, parallel_mode from LOCAL_RANK/NODE_RANK): curi's run "
    "makes its manager itself and has no distributed-rank mode"
)
PARALLEL = (
    "Curifactory's --parallel (a multiprocessing.Process per range of parameter sets, then a "
    "serial re-run): curi's -j N runs stage calls in worker processes"
)
REPLACED = "map_only and hashes_only are replaced by `curi plan`"
PARAM_ERRORS = (
    "parameter-file mistakes raise curi's ParamsError naming the file, with a hint, not "
    "RuntimeError with Curifactory's text"
)
AGG_NO_ARGS = (
    "an aggregate with no parameters and no records still has a cache key (its code, "
    "cachers and outputs), so its second call is a cache hit"
)
CLI = (
    "Curifactory's argparse CLI (completer_experiments, completer_params, `experiment ls`): "
    "curi's CLI is its own, with shell completion and `curi ls`"
)
INIT = (
    "`curifactory init` (curifactory.project) is not provided: a curi project is a folder "
    "with experiments/, its settings in curi.toml"
)
NOTEBOOK = "--notebook (curifactory.notebook.write_experiment_notebook) is not provided"
SHARED = (
    "a stage call is keyed on the parameters it reads: two sets that agree on those share its "
    "entry (a stage that reads none computes once for every set), where Curifactory keys it "
    'on the whole set; @stage(..., params="all") keeps Curifactory\'s keys'
)
