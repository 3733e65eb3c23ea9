//! The plugin instances of one evaluation: a plugin's first call in the
//! evaluation instantiates it, and its later calls (the other gates,
//! triggers or actions that name it) run on the same instance.
//!
//! Instantiation, not guest code, was most of a call's cost (a fresh store
//! and instance took about 7 of a gate's 11 µs), and a policy names the same
//! plugin many times: the CI policy's six gates are all `threshold`.
//! Isolation stays per evaluation and per plugin: a session is never shared
//! between evaluations, each plugin gets its own store, and every call still
//! gets its own CPU budget, log and snapshot handle. A call that fails for
//! any reason discards its instance, so a trap, a breached limit or an
//! interrupted call never leaves a half-run instance for the next call.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::{Store, UpdateDeadline};

use super::answer::{Action, Finding, TriggerFinding};
use super::answer::{LogLine, StageResult};
use super::bindings::action::Action as ActionInstance;
use super::bindings::action::exports::tollgate::plugin::action_api as wit_action;
use super::bindings::gate::Gate as GateInstance;
use super::bindings::source::Source as SourceInstance;
use super::bindings::trigger::Trigger as TriggerInstance;
use super::call::{
    ActionContext, Call, Input, Plugin, PluginConfig, PluginKind, classify, instantiate_error,
    with_panic_message, wrong_world,
};
use super::error::CallError;
use super::host::HostState;
use super::inspect::World;
use super::limits::{Budget, Limits, MAX_REASON_BYTES};
use super::output::{check_finding, check_plan, check_trigger};
use crate::base::digest::Digest;
use crate::snapshot::Snapshot;

/// Plugin instances one session keeps at most; a pool is sized for this
/// many per evaluation running at once.
pub const SESSION_INSTANCES: usize = 4;

/// An instantiated plugin, bound to the world it exports.
pub(super) enum Bound {
    Gate(GateInstance),
    Trigger(TriggerInstance),
    Action(ActionInstance),
    Source(SourceInstance),
}

/// A plugin's store for the rest of the evaluation, and its instance once
/// the first call has made it.
struct Open {
    digest: Digest,
    name: String,
    limits: Limits,
    store: Store<HostState>,
    bound: Option<Bound>,
}

/// The plugin instances of one evaluation over one input. Drop it when the
/// evaluation ends; nothing in it outlives that.
pub struct Session {
    input: Input,
    open: Vec<Open>,
}

impl Session {
    /// A session over `input`: every call in it reads this snapshot and
    /// this decision time.
    pub fn new(input: Input) -> Self {
        Self {
            input,
            open: Vec::new(),
        }
    }

    /// Asks the plugin whether `config` is acceptable, whatever its world.
    pub(super) fn validate_config(
        &mut self,
        plugin: &Plugin,
        config: &PluginConfig,
        limits: &Limits,
    ) -> Call<Result<(), String>> {
        self.call(
            plugin,
            limits,
            plugin.info.world,
            |store, bound| match bound {
                Bound::Gate(gate) => gate
                    .tollgate_plugin_gate_api()
                    .call_validate_config(&mut *store, config),
                Bound::Trigger(trigger) => trigger
                    .tollgate_plugin_trigger_api()
                    .call_validate_config(&mut *store, config),
                Bound::Action(action) => action
                    .tollgate_plugin_action_api()
                    .call_validate_config(&mut *store, config),
                Bound::Source(source) => source
                    .tollgate_plugin_source_api()
                    .call_validate_config(&mut *store, config),
            },
        )
    }

    /// Runs a gate.
    pub fn evaluate(
        &mut self,
        plugin: &Plugin,
        config: &PluginConfig,
        limits: &Limits,
    ) -> Call<Finding> {
        self.call(plugin, limits, World::Gate, |store, bound| {
            let Bound::Gate(gate) = bound else {
                return Err(wrong_world(World::Gate));
            };
            let handle = store.data_mut().snapshot_handle()?;
            gate.tollgate_plugin_gate_api()
                .call_evaluate(&mut *store, config, handle)
        })
        .map(|r| r.and_then(check_finding))
    }

    /// Runs a trigger with the state its previous check returned.
    pub fn check(
        &mut self,
        plugin: &Plugin,
        config: &PluginConfig,
        state: &[u8],
        limits: &Limits,
    ) -> Call<TriggerFinding> {
        self.call(plugin, limits, World::Trigger, |store, bound| {
            let Bound::Trigger(trigger) = bound else {
                return Err(wrong_world(World::Trigger));
            };
            let handle = store.data_mut().snapshot_handle()?;
            trigger
                .tollgate_plugin_trigger_api()
                .call_check(&mut *store, config, handle, state)
        })
        .map(|r| r.and_then(check_trigger))
    }

    /// Asks an action plugin for its plan.
    pub fn plan(
        &mut self,
        plugin: &Plugin,
        config: &PluginConfig,
        context: &ActionContext,
        limits: &Limits,
    ) -> Call<Result<Vec<Action>, String>> {
        let ctx = wit_context(context);
        self.call(plugin, limits, World::Action, |store, bound| {
            let Bound::Action(action) = bound else {
                return Err(wrong_world(World::Action));
            };
            let handle = store.data_mut().snapshot_handle()?;
            action
                .tollgate_plugin_action_api()
                .call_plan(&mut *store, config, handle, &ctx)
        })
        .map(|r| r.and_then(check_plan))
    }

    /// Runs `f` on `plugin`'s instance within `limits`. A call that fails
    /// on an instance earlier calls used is run again on a fresh one, unless
    /// it ran out of time: what earlier calls left behind (memory a bump
    /// allocator never returns, a static they changed) must not fail a call
    /// that would pass alone, and a plugin that loops still costs one
    /// deadline, not two. A call the full pool refused is tried again once
    /// this session's idle instances are given back.
    pub(super) fn call<T>(
        &mut self,
        plugin: &Plugin,
        limits: &Limits,
        world: World,
        f: impl Fn(&mut Store<HostState>, &Bound) -> wasmtime::Result<T>,
    ) -> Call<T> {
        let started = Instant::now();
        let (reused, mut call) = self.attempt(plugin, limits, world, &f);
        let retry = match &call.result {
            Ok(_) => false,
            // The pool is shared by every evaluation in flight: give back
            // this session's idle instances and try once more.
            Err(CallError::PoolExhausted) => !self.open.is_empty(),
            Err(CallError::Deadline(_) | CallError::WallCeiling(_)) => false,
            Err(_) => reused,
        };
        if retry {
            if let Err(CallError::PoolExhausted) = &call.result {
                self.open.clear();
            }
            let first = call
                .result
                .as_ref()
                .err()
                .map(ToString::to_string)
                .unwrap_or_default();
            call = self.attempt(plugin, limits, world, &f).1;
            call.logs.insert(
                0,
                LogLine {
                    level: "warn".into(),
                    message: format!("run again on a fresh instance after: {first}"),
                },
            );
        }
        call.elapsed = started.elapsed();
        call
    }

    /// One run of `f`, instantiating the plugin first (inside the same
    /// budget, so a start function that loops is stopped like any call)
    /// when it has no instance yet. Says whether an instance was reused.
    fn attempt<T>(
        &mut self,
        plugin: &Plugin,
        limits: &Limits,
        world: World,
        f: &impl Fn(&mut Store<HostState>, &Bound) -> wasmtime::Result<T>,
    ) -> (bool, Call<T>) {
        let started = Instant::now();
        let index =
            match self.open.iter().position(|o| {
                o.digest == plugin.digest && o.name == plugin.name && o.limits == *limits
            }) {
                Some(index) => index,
                None => {
                    self.open.push(open(plugin, &self.input, limits));
                    self.open.len() - 1
                }
            };
        let entry = &mut self.open[index];
        let reused = entry.bound.is_some();
        let budget = Budget::start(limits.deadline);
        {
            let state = entry.store.data_mut();
            state.budget = Some(budget);
            state.out_of_time = None;
        }
        entry.store.set_epoch_deadline(budget.first_ticks());
        let outcome = match &entry.bound {
            Some(bound) => f(&mut entry.store, bound),
            None => match instantiate(plugin, &mut entry.store, world).map_err(instantiate_error) {
                Ok(bound) => f(&mut entry.store, entry.bound.insert(bound)),
                Err(e) => Err(e),
            },
        };
        let elapsed = started.elapsed();
        let state = entry.store.data_mut();
        state.drain_stdio();
        state.release_snapshot_handles();
        let mut logs = std::mem::take(&mut state.logs);
        let dropped = std::mem::take(&mut state.logs_dropped);
        let reads = std::mem::take(&mut state.reads);
        let result = outcome.map_err(|e| with_panic_message(classify(e, state, limits), &logs));
        if dropped > 0 {
            logs.push(LogLine {
                level: "warn".into(),
                message: format!("{dropped} more log lines dropped"),
            });
        }
        if result.is_err() {
            // A failed call may have left the instance mid-way (a trap
            // poisons it, a breach or an interrupt stops it anywhere): the
            // next call of this plugin starts from a fresh one.
            self.open.swap_remove(index);
        }
        let call = Call {
            result,
            logs,
            reads,
            elapsed,
        };
        (reused, call)
    }
}

/// Single calls, each on an instance of its own: loading checks settings
/// this way, and so do callers that run one plugin once.
impl Plugin {
    /// Asks the plugin whether `config` is acceptable.
    pub fn validate_config(
        &self,
        config: &PluginConfig,
        limits: Limits,
    ) -> Call<Result<(), String>> {
        // Settings are checked with no snapshot and a clock at zero: a
        // configuration is valid or not whatever the time.
        let input = Input {
            snapshot: Arc::new(Snapshot::empty()),
            now: 0,
        };
        Session::new(input)
            .validate_config(self, config, &limits)
            .map(|r| match r {
                Ok(Err(msg)) if msg.len() > MAX_REASON_BYTES => Err(CallError::Output(format!(
                    "configuration error of {} bytes exceeds the {MAX_REASON_BYTES}-byte limit",
                    msg.len()
                ))),
                other => other,
            })
    }

    /// Runs a gate over `input` on an instance of its own. An evaluation
    /// with several gates runs them in one [`Session`] instead.
    pub fn evaluate(&self, config: &PluginConfig, input: Input, limits: Limits) -> Call<Finding> {
        Session::new(input).evaluate(self, config, &limits)
    }

    /// Runs a trigger over `input` with the state its previous check
    /// returned, on an instance of its own.
    pub fn check(
        &self,
        config: &PluginConfig,
        input: Input,
        state: &[u8],
        limits: Limits,
    ) -> Call<TriggerFinding> {
        Session::new(input).check(self, config, state, &limits)
    }

    /// Asks an action plugin for its plan, on an instance of its own.
    pub fn plan(
        &self,
        config: &PluginConfig,
        input: Input,
        context: &ActionContext,
        limits: Limits,
    ) -> Call<Result<Vec<Action>, String>> {
        Session::new(input).plan(self, config, context, &limits)
    }
}

/// A store for `plugin` over `input` within `limits`, whose epoch callback
/// reads the budget of the call running in it.
fn open(plugin: &Plugin, input: &Input, limits: &Limits) -> Open {
    let mut store = Store::new(
        &plugin.engine,
        HostState::new(input.clone(), limits.memory, limits.files.clone()),
    );
    store.limiter(|s| &mut s.limiter);
    store.epoch_deadline_callback(|mut cx| {
        let state = cx.data_mut();
        let Some(budget) = state.budget else {
            return Ok(UpdateDeadline::Interrupt);
        };
        match budget.check() {
            Some(ticks) => Ok(UpdateDeadline::Continue(ticks)),
            None => {
                state.out_of_time = Some(budget.exhausted());
                Ok(UpdateDeadline::Interrupt)
            }
        }
    });
    Open {
        digest: plugin.digest,
        name: plugin.name.clone(),
        limits: limits.clone(),
        store,
        bound: None,
    }
}

fn instantiate(
    plugin: &Plugin,
    store: &mut Store<HostState>,
    world: World,
) -> wasmtime::Result<Bound> {
    let bound = match (&plugin.kind, world) {
        (PluginKind::Gate(pre), World::Gate) => Bound::Gate(pre.instantiate(&mut *store)?),
        (PluginKind::Trigger(pre), World::Trigger) => Bound::Trigger(pre.instantiate(&mut *store)?),
        (PluginKind::Action(pre), World::Action) => Bound::Action(pre.instantiate(&mut *store)?),
        (PluginKind::Source(pre), World::Source) => Bound::Source(pre.instantiate(&mut *store)?),
        _ => return Err(wrong_world(world)),
    };
    Ok(bound)
}

fn wit_context(context: &ActionContext) -> wit_action::Context {
    wit_action::Context {
        stage: context.stage.clone(),
        stages: context
            .stages
            .iter()
            .map(|s| wit_action::StageInfo {
                name: s.name.clone(),
                traffic_percent: s.traffic_percent,
                min_duration_seconds: s.min_duration_seconds,
            })
            .collect(),
        elapsed_seconds: context.elapsed_seconds,
        outcome: match context.outcome {
            StageResult::Pass => wit_action::Outcome::Pass,
            StageResult::Warning => wit_action::Outcome::Warning,
            StageResult::Fail => wit_action::Outcome::Fail,
            StageResult::Inconclusive => wit_action::Outcome::Inconclusive,
        },
        trigger: context.trigger.clone(),
    }
}
