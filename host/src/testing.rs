//! Testing programs from Rust: load a program (with overrides), disable
//! `run` on chosen nodes, launch it in this process (`TestLaunch::Mt`) or in
//! worker processes (`TestLaunch::Mp`), call any node's exported functions,
//! wait for chosen nodes' runs to finish, trigger or wait for the stop, and
//! read each node's output.
//!
//! ```no_run
//! use lp_host::testing::{TestLaunch, TestProgram};
//!
//! let run = TestProgram::new("examples/consumer_producers/program.toml")
//!     .set("producer.replicas=3")
//!     .disable_run("consumer")
//!     .launch(TestLaunch::Mt)
//!     .unwrap();
//! let got: Vec<u64> = run.node("consumer").unwrap().call("step", (4u64,)).unwrap();
//! assert_eq!(got, vec![4, 4, 4]);
//! ```
//!
//! A node that fails makes the calls that reach it fail with its name and
//! error, makes [`TestRun::wait`] return that error, and, if the test never
//! looked, fails the test when the [`TestRun`] is dropped. Dropping a
//! [`TestRun`] stops the program at once and waits for every thread and
//! worker process to end.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use wasmtime::component::Val;

use crate::courier::{FuncKey, Payload, Router};
use crate::launch::end::{RunRecord, RunsWaited};
use crate::launch::seeded::{self, Seeded};
use crate::launch::{
    self, LaunchOptions, LoadError, LoadOptions, Outcome, ProgramHandle, RunningProgram,
};
use crate::output::Output;
use crate::program::Override;

/// Where a test's nodes run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestLaunch {
    /// In this process, as local_mt runs them (test_mt).
    Mt,
    /// A worker process per node or colocation group, as local_mp runs them
    /// (test_mp). Needs the `lp-host` binary: `$LP_HOST_EXE`, else the one
    /// cargo built beside the test binary.
    Mp,
}

/// A program to launch for a test.
#[derive(Clone, Debug)]
pub struct TestProgram {
    path: PathBuf,
    overrides: Vec<String>,
    run_disabled: Vec<String>,
    cache_dir: Option<PathBuf>,
    call_timeout: Duration,
}

impl TestProgram {
    /// The program at `path` (a program.toml).
    pub fn new(path: impl AsRef<Path>) -> TestProgram {
        TestProgram {
            path: path.as_ref().to_path_buf(),
            overrides: Vec::new(),
            run_disabled: Vec::new(),
            cache_dir: None,
            call_timeout: Duration::from_secs(60),
        }
    }

    /// Change a setting, as `lp-host run --set` does (e.g.
    /// `producer.replicas=3`); a bad one is reported by [`Self::launch`].
    pub fn set(mut self, setting: &str) -> TestProgram {
        self.overrides.push(setting.to_string());
        self
    }

    /// Do not call this node's `run`: it only serves calls.
    pub fn disable_run(mut self, node: &str) -> TestProgram {
        self.run_disabled.push(node.to_string());
        self
    }

    /// Where compiled components are cached (default: `$LP_CACHE_DIR`, else
    /// `~/.cache/lp`).
    pub fn cache_dir(mut self, dir: impl AsRef<Path>) -> TestProgram {
        self.cache_dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// How long a call from the test, or a [`TestRun::wait_for`], may take
    /// (default 60 s).
    pub fn call_timeout(mut self, timeout: Duration) -> TestProgram {
        self.call_timeout = timeout;
        self
    }

    /// Load the program with its settings and disabled runs, and plan it
    /// (with a fuel-counting engine for seeded runs).
    fn plan(&self, fuel: bool) -> Result<launch::Plan> {
        let overrides: Vec<Override> = self
            .overrides
            .iter()
            .map(|s| s.parse())
            .collect::<Result<_, String>>()
            .map_err(|e| anyhow!("bad setting: {e}"))?;
        let loading = LoadOptions {
            cache_dir: self.cache_dir.clone(),
            seeded: fuel,
            run_disabled: self.run_disabled.clone(),
            ..LoadOptions::default()
        };
        launch::Plan::load(&self.path, &overrides, &loading).map_err(|e| match e {
            LoadError::Program(d) => anyhow!("{d}"),
            LoadError::Plan { error, .. } => error,
        })
    }

    /// Build, check and start the program.
    pub fn launch(self, how: TestLaunch) -> Result<TestRun> {
        let plan = self.plan(false)?;
        let cache_dir = self.cache_dir.clone();
        let output = Output::capture();
        let options = LaunchOptions {
            output: output.clone(),
            ..LaunchOptions::default()
        };
        let running = match how {
            TestLaunch::Mt => launch::local_mt::launch(&plan, options)?,
            TestLaunch::Mp => {
                let worker_exe = match std::env::var_os("LP_HOST_EXE") {
                    Some(exe) => PathBuf::from(exe),
                    None => lp_host_exe()?,
                };
                let options = LaunchOptions {
                    worker_exe: Some(worker_exe),
                    ..options
                };
                launch::local_mp::launch(&plan, options, cache_dir)?
            }
        };
        let nodes = plan
            .program
            .nodes
            .iter()
            .map(|n| TestNodeInfo {
                name: n.name.clone(),
                entry: n.entry.clone(),
                group: n.group.clone(),
                has_run: n.run_enabled && plan.interface_of(n).has_run,
                functions: plan
                    .interface_of(n)
                    .services
                    .iter()
                    .flat_map(|s| {
                        s.functions.iter().filter_map(|f| {
                            let key = plan.funcs.get(&s.name, &f.name)?;
                            Some((s.name.clone(), f.name.clone(), key))
                        })
                    })
                    .collect(),
            })
            .collect();
        let calls = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the test's call runtime")?;
        Ok(TestRun {
            handle: running.handle(),
            router: running.router(),
            runs: running.runs(),
            running: Some(running),
            calls,
            output,
            nodes,
            call_timeout: self.call_timeout,
        })
    }
}

/// A deterministic run (test_mt with a seed), ended.
pub struct SeededRun {
    pub seed: u64,
    pub outcome: Outcome,
    /// Every step, call, return, output line and fault, one per line; the
    /// same for the same seed, byte for byte.
    pub trace: String,
    /// What the nodes printed or logged, as `[node] text`, in order.
    pub output: Vec<String>,
    /// The command that replays this run.
    pub replay: String,
}

impl SeededRun {
    /// Ok if no node failed; else an error naming the failures, the seed and
    /// the command that replays the run.
    pub fn check(&self) -> Result<()> {
        match failure(&self.outcome) {
            None => Ok(()),
            Some(e) => Err(e.context(format!(
                "seed {} failed; replay it with: {}",
                self.seed, self.replay
            ))),
        }
    }
}

impl TestProgram {
    /// Run the program to its end on the seeded, deterministic scheduler
    /// (as `lp-host run --launch test_mt --seed N --faults F`).
    pub fn run_seeded(&self, seed: u64, faults: u32) -> Result<SeededRun> {
        let plan = self.plan(true)?;
        let settings = Seeded {
            faults,
            ..Seeded::new(seed)
        };
        let output = Output::capture();
        let run = seeded::run(&plan, &settings, &output, Some(Duration::from_secs(10)))?;
        Ok(SeededRun {
            seed,
            outcome: run.outcome,
            trace: run.trace,
            output: output
                .lines()
                .into_iter()
                .map(|l| format!("[{}] {}", l.node, l.text))
                .collect(),
            replay: seeded::replay_command(&self.path, &self.overrides, &settings),
        })
    }
}

/// The `lp-host` binary for worker processes: the one cargo built in the
/// same target directory as this test binary.
fn lp_host_exe() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let candidates = exe
        .ancestors()
        .skip(1)
        .take(3)
        .map(|dir| dir.join("lp-host"))
        .collect::<Vec<_>>();
    candidates
        .iter()
        .find(|c| c.is_file())
        .cloned()
        .ok_or_else(|| {
            anyhow!(
                "TestLaunch::Mp needs the lp-host binary for its worker processes, and none is beside {}\n  help: run `cargo build -p lp-host` first, or set LP_HOST_EXE to its path",
                exe.display()
            )
        })
}

struct TestNodeInfo {
    name: String,
    entry: String,
    group: String,
    /// Whether its `run` is called.
    has_run: bool,
    /// Every function the node exports: (interface, function, key).
    functions: Vec<(String, String, FuncKey)>,
}

/// A program launched by a test.
pub struct TestRun {
    running: Option<RunningProgram>,
    handle: ProgramHandle,
    router: Arc<Router>,
    /// Which nodes' runs finished or failed.
    runs: Arc<RunRecord>,
    /// Drives the calls the test makes.
    calls: tokio::runtime::Runtime,
    output: Output,
    nodes: Vec<TestNodeInfo>,
    call_timeout: Duration,
}

impl TestRun {
    /// A client for the node called `name` (e.g. `consumer`, `producer/2`).
    pub fn node(&self, name: &str) -> Result<TestNode<'_>> {
        let id = self
            .nodes
            .iter()
            .position(|n| n.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
                anyhow!(
                    "the program has no node `{name}`\n  help: nodes are {}",
                    names.join(", ")
                )
            })?;
        Ok(TestNode {
            run: self,
            id: id as u32,
        })
    }

    /// Ask the program to stop, as a node's `stop()` does.
    pub fn stop(&self) {
        self.handle.stop();
    }

    /// Wait until the run of every node in `names` (node names such as
    /// `actor/3`, entry names or group names) has finished; an error if one
    /// of the program's nodes fails first, the program ends first, or it
    /// takes longer than the call timeout. The nodes keep serving.
    pub fn wait_for(&self, names: &[&str]) -> Result<()> {
        self.wait_for_runs(names, false)
    }

    /// Like [`Self::wait_for`], returning once the first of them has finished.
    pub fn wait_for_first(&self, names: &[&str]) -> Result<()> {
        self.wait_for_runs(names, true)
    }

    fn wait_for_runs(&self, names: &[&str], first: bool) -> Result<()> {
        if names.is_empty() {
            bail!("wait_for needs at least one node, entry or group name");
        }
        let mut ids = Vec::new();
        for &name in names {
            let named: Vec<u32> = (0..self.nodes.len() as u32)
                .filter(|&id| {
                    let n = &self.nodes[id as usize];
                    n.name == name || n.entry == name || n.group == name
                })
                .collect();
            if named.is_empty() {
                let names: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
                bail!(
                    "the program has no node, entry or group `{name}`\n  help: nodes are {}",
                    names.join(", ")
                );
            }
            if let Some(n) = named
                .iter()
                .map(|&id| &self.nodes[id as usize])
                .find(|n| !n.has_run)
            {
                bail!(
                    "node {} has no run to finish (it exports none, or its run is disabled)\n  help: wait for nodes whose run is called",
                    n.name
                );
            }
            ids.extend(named);
        }
        let name = |id: u32| &self.nodes[id as usize].name;
        match self.runs.wait(&ids, first, self.call_timeout) {
            RunsWaited::Finished => Ok(()),
            RunsWaited::Failed(id, error) => bail!("node {} failed: {error}", name(id)),
            RunsWaited::Ended => bail!(
                "the program ended before the runs of {} finished",
                names.join(", ")
            ),
            RunsWaited::TimedOut => bail!(
                "the runs of {} did not finish within {:?}\n  help: raise TestProgram::call_timeout if they need longer",
                names.join(", "),
                self.call_timeout
            ),
        }
    }

    /// Wait for the program to end (after a stop, or when every `run` has
    /// finished). A node that failed is an error naming it.
    pub fn wait(mut self) -> Result<Outcome> {
        self.end()
    }

    /// Like [`Self::wait`], keeping the run to read its output afterwards.
    pub fn end(&mut self) -> Result<Outcome> {
        let running = self
            .running
            .take()
            .context("the program has already ended")?;
        let outcome = running.wait();
        failure(&outcome).map_or(Ok(outcome), Err)
    }

    /// The lines node `name` printed or logged so far, in order.
    pub fn output(&self, name: &str) -> Vec<String> {
        self.output
            .lines()
            .into_iter()
            .filter(|l| l.node == name)
            .map(|l| l.text)
            .collect()
    }

    /// Every line every node printed so far, in order, as `[node] text`.
    pub fn all_output(&self) -> Vec<String> {
        self.output
            .lines()
            .into_iter()
            .map(|l| format!("[{}] {}", l.node, l.text))
            .collect()
    }
}

/// The error for an outcome in which nodes failed.
fn failure(outcome: &Outcome) -> Option<anyhow::Error> {
    if outcome.failures.is_empty() {
        return None;
    }
    Some(anyhow!("{}", outcome.failure_report().join("\n")))
}

impl Drop for TestRun {
    fn drop(&mut self) {
        let Some(running) = self.running.take() else {
            return;
        };
        self.handle.kill();
        let outcome = running.wait();
        if let Some(error) = failure(&outcome)
            && !std::thread::panicking()
        {
            panic!("{error}");
        }
    }
}

/// One node of a [`TestRun`], to call.
pub struct TestNode<'a> {
    run: &'a TestRun,
    id: u32,
}

impl TestNode<'_> {
    fn name(&self) -> &str {
        &self.run.nodes[self.id as usize].name
    }

    /// The key of `function`: a bare name (`step`) if only one exported
    /// interface has it, else `interface.function` where `interface` is the
    /// interface's name or its end (`consumer.step`).
    fn key(&self, function: &str) -> Result<FuncKey> {
        let info = &self.run.nodes[self.id as usize];
        let (interface, name) = match function.rsplit_once('.') {
            Some((i, f)) => (Some(i), f),
            None => (None, function),
        };
        let matches: Vec<&(String, String, FuncKey)> = info
            .functions
            .iter()
            .filter(|(i, f, _)| {
                f == name
                    && interface.is_none_or(|want| {
                        let short = i.split('@').next().unwrap_or(i);
                        i == want || short == want || short.ends_with(&format!("/{want}"))
                    })
            })
            .collect();
        match matches.as_slice() {
            [(_, _, key)] => Ok(*key),
            [] => {
                let exported: Vec<String> = info
                    .functions
                    .iter()
                    .map(|(i, f, _)| format!("{i}.{f}"))
                    .collect();
                bail!(
                    "node {} exports no function `{function}`\n  help: it exports {}",
                    info.name,
                    if exported.is_empty() {
                        "nothing".to_string()
                    } else {
                        exported.join(", ")
                    }
                )
            }
            _ => bail!(
                "node {}: `{function}` is in several interfaces\n  help: name it as interface.{name}",
                info.name
            ),
        }
    }

    /// Call `function` with dynamic values; its result, if it has one.
    pub fn call_vals(&self, function: &str, args: Vec<Val>) -> Result<Option<Val>> {
        let key = self.key(function)?;
        let router = &self.run.router;
        let reply = self.run.calls.block_on(router.call_with_deadline(
            self.id,
            key,
            Payload::Vals(args),
            Some(self.run.call_timeout),
        ));
        match reply {
            Ok(Payload::Vals(mut results)) => Ok(results.pop()),
            Ok(Payload::Typed(_)) => {
                bail!("{}.{function}: a reply of an unexpected form", self.name())
            }
            Err(e) => bail!("calling {}.{function}: {e}", self.name()),
        }
    }

    /// Call `function` with Rust values (a tuple of arguments) and convert
    /// its result, e.g. `node.call::<Vec<u64>>("step", (3u64,))`.
    pub fn call<R: FromVal>(&self, function: &str, args: impl IntoArgs) -> Result<R> {
        let result = self.call_vals(function, args.into_args())?;
        R::from_result(result).with_context(|| format!("the result of {}.{function}", self.name()))
    }
}

/// A Rust value as a component value.
pub trait IntoVal {
    fn into_val(self) -> Val;
}

/// A component value as a Rust value.
pub trait FromVal: Sized {
    fn from_val(val: Val) -> Result<Self>;

    /// From a function's (optional) result.
    fn from_result(result: Option<Val>) -> Result<Self> {
        Self::from_val(result.context("the function returns nothing")?)
    }
}

macro_rules! scalar {
    ($($ty:ty => $variant:ident),* $(,)?) => {$(
        impl IntoVal for $ty {
            fn into_val(self) -> Val {
                Val::$variant(self)
            }
        }
        impl FromVal for $ty {
            fn from_val(val: Val) -> Result<Self> {
                match val {
                    Val::$variant(v) => Ok(v),
                    other => bail!("expected {}, got {other:?}", stringify!($ty)),
                }
            }
        }
    )*};
}

scalar!(bool => Bool, u8 => U8, u16 => U16, u32 => U32, u64 => U64, i8 => S8, i16 => S16,
    i32 => S32, i64 => S64, f32 => Float32, f64 => Float64, char => Char, String => String);

impl IntoVal for &str {
    fn into_val(self) -> Val {
        Val::String(self.to_string())
    }
}

impl IntoVal for Val {
    fn into_val(self) -> Val {
        self
    }
}

impl FromVal for Val {
    fn from_val(val: Val) -> Result<Self> {
        Ok(val)
    }
}

impl<T: IntoVal> IntoVal for Vec<T> {
    fn into_val(self) -> Val {
        Val::List(self.into_iter().map(IntoVal::into_val).collect())
    }
}

impl<T: FromVal> FromVal for Vec<T> {
    fn from_val(val: Val) -> Result<Self> {
        match val {
            Val::List(items) => items.into_iter().map(T::from_val).collect(),
            other => bail!("expected a list, got {other:?}"),
        }
    }
}

impl<T: IntoVal> IntoVal for Option<T> {
    fn into_val(self) -> Val {
        Val::Option(self.map(|v| Box::new(v.into_val())))
    }
}

impl<T: FromVal> FromVal for Option<T> {
    fn from_val(val: Val) -> Result<Self> {
        match val {
            Val::Option(v) => v.map(|v| T::from_val(*v)).transpose(),
            other => bail!("expected an option, got {other:?}"),
        }
    }
}

impl<T: FromVal, E: FromVal> FromVal for std::result::Result<T, E> {
    fn from_val(val: Val) -> Result<Self> {
        match val {
            Val::Result(Ok(v)) => T::from_result(v.map(|v| *v)).map(Ok),
            Val::Result(Err(e)) => E::from_result(e.map(|e| *e)).map(Err),
            other => bail!("expected a result, got {other:?}"),
        }
    }
}

impl FromVal for () {
    fn from_val(val: Val) -> Result<Self> {
        bail!("expected nothing, got {val:?}")
    }

    fn from_result(result: Option<Val>) -> Result<Self> {
        result.map_or(Ok(()), Self::from_val)
    }
}

/// A function's arguments: a tuple of [`IntoVal`]s, or a `Vec<Val>`.
pub trait IntoArgs {
    fn into_args(self) -> Vec<Val>;
}

impl IntoArgs for Vec<Val> {
    fn into_args(self) -> Vec<Val> {
        self
    }
}

macro_rules! tuple_args {
    ($(($($name:ident),*)),* $(,)?) => {$(
        impl<$($name: IntoVal),*> IntoArgs for ($($name,)*) {
            #[allow(non_snake_case)]
            fn into_args(self) -> Vec<Val> {
                let ($($name,)*) = self;
                vec![$($name.into_val()),*]
            }
        }
    )*};
}

tuple_args!((), (A), (A, B), (A, B, C), (A, B, C, D));
