//! The evaluation service through its seam, the store: conflicts,
//! failures and idempotent answers are injected there, with the real
//! runtime, the bundled policies and the memory store behind it.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::server::{ServerConfig, Tokens};
use crate::snapshot::{Point, Series};
use crate::store::memory::MemoryStore;
use crate::store::{Commit, Store, StoreFuture};

/// How the seam answers commits.
#[derive(Clone, Copy)]
enum Commits {
    /// Refuse the first `n` as concurrent advances, then commit.
    Conflict(usize),
    /// Fail every one, as a full disk would.
    Fail,
    /// Answer every one as a key another request took first.
    Taken,
}

/// A memory store whose commits are answered as `commits` says, and
/// which counts what it was asked.
struct Seam {
    inner: MemoryStore,
    commits: Commits,
    attempts: AtomicUsize,
    reads: AtomicUsize,
    /// Commits that went through.
    committed: Arc<AtomicUsize>,
    /// The last commit's `advance_state` and count of state writes.
    last: std::sync::Mutex<Option<(bool, usize)>>,
}

impl Seam {
    fn new(commits: Commits) -> Arc<Self> {
        Arc::new(Self {
            inner: MemoryStore::default(),
            commits,
            attempts: AtomicUsize::new(0),
            reads: AtomicUsize::new(0),
            committed: Arc::new(AtomicUsize::new(0)),
            last: std::sync::Mutex::new(None),
        })
    }
}

impl Store for Seam {
    fn describe(&self) -> String {
        "seam".into()
    }
    fn logs_decisions(&self) -> bool {
        true
    }
    fn read_state<'a>(
        &'a self,
        keys: &'a [String],
    ) -> StoreFuture<'a, Vec<Option<crate::store::Versioned>>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.read_state(keys)
    }
    fn answer<'a>(
        &'a self,
        key: &'a crate::store::IdempotencyKey,
    ) -> StoreFuture<'a, Option<StoredAnswer>> {
        self.inner.answer(key)
    }
    fn token_key(&self) -> [u8; crate::store::TOKEN_KEY_BYTES] {
        self.inner.token_key()
    }
    fn commit(&self, commit: Commit) -> StoreFuture<'_, ()> {
        let attempt = self.attempts.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut last) = self.last.lock() {
            *last = Some((commit.record.asked.advance_state, commit.state.len()));
        }
        match self.commits {
            Commits::Conflict(n) if attempt < n => Box::pin(async move {
                Err(StoreError::Conflict {
                    key: "canary/checkout/error-rate-spike".into(),
                })
            }),
            Commits::Conflict(_) => {
                let committed = Arc::clone(&self.committed);
                let done = self.inner.commit(commit);
                Box::pin(async move {
                    done.await?;
                    committed.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
            }
            Commits::Fail => Box::pin(async {
                Err(StoreError::Unavailable {
                    store: "seam".into(),
                    message: "disk full".into(),
                })
            }),
            Commits::Taken => {
                let answer = StoredAnswer {
                    key: crate::store::IdempotencyKey {
                        token_id: "token".into(),
                        policy: "canary".into(),
                        key: "k".into(),
                    },
                    body: crate::base::digest::Digest::of(b"{}"),
                    status: 200,
                    response: Arc::from(&b"{}"[..]),
                    decision_id: "first".into(),
                };
                Box::pin(async move { Err(StoreError::KeyTaken(Box::new(answer))) })
            }
        }
    }
    fn decision<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<crate::store::Record>> {
        self.inner.decision(id)
    }
    fn list<'a>(
        &'a self,
        filter: &'a crate::store::Filter,
    ) -> StoreFuture<'a, Vec<crate::store::Summary>> {
        self.inner.list(filter)
    }

    fn count<'a>(&'a self, filter: &'a crate::store::Filter) -> StoreFuture<'a, usize> {
        self.inner.count(filter)
    }
    fn blob<'a>(
        &'a self,
        digest: &'a crate::base::digest::Digest,
    ) -> StoreFuture<'a, Option<Vec<u8>>> {
        self.inner.blob(digest)
    }
    fn prune(&self, before_ms: i64) -> StoreFuture<'_, crate::store::Pruned> {
        self.inner.prune(before_ms)
    }
    fn add_approval(&self, approval: crate::policy::approvals::Approval) -> StoreFuture<'_, ()> {
        self.inner.add_approval(approval)
    }
    fn approvals<'a>(
        &'a self,
        service: &'a str,
        version: &'a str,
    ) -> StoreFuture<'a, Vec<crate::policy::approvals::Approval>> {
        self.inner.approvals(service, version)
    }
}

fn state_over(store: Arc<Seam>) -> AppState {
    // One runtime for every test, so its compile cache compiles each
    // bundled plugin once.
    static RUNTIME: std::sync::OnceLock<Arc<crate::engine::Runtime>> = std::sync::OnceLock::new();
    let runtime =
        RUNTIME.get_or_init(|| Arc::new(crate::engine::Runtime::with_slots(32).expect("runtime")));
    AppState::new(
        ServerConfig::default(),
        Arc::clone(runtime),
        Tokens::disabled(),
        store,
    )
    .expect("the bundled policies load")
}

/// A healthy canary observed `ahead` seconds from now.
fn snapshot(ahead: i64) -> Snapshot {
    let at = crate::evaluate::clock_now() + ahead;
    let series = |name: &str, value: f64| Series {
        name: name.into(),
        labels: [("track".to_string(), "canary".to_string())].into(),
        points: (0..10)
            .map(|i| Point {
                timestamp: at - 600 + 60 * i,
                value,
            })
            .collect(),
    };
    Snapshot {
        service: "checkout".into(),
        version: "2.1.0".into(),
        taken_at: at,
        metrics: vec![
            series("error_rate", 0.0005),
            series("response_time_p95_ms", 120.0),
        ],
        baseline: Vec::new(),
        attributes: Default::default(),
        commits: Vec::new(),
    }
}

fn job(stage: Option<&str>, snapshot: Snapshot) -> Job {
    Job {
        policy: "canary".into(),
        stage: stage.map(str::to_string),
        elapsed: Some(Duration::from_secs(3600)),
        input: Input::Given(snapshot),
        advance_state: true,
        schedule: crate::evaluate::Schedule::Policy,
        token_id: None,
        grant: super::super::auth::Grant::open(),
        idempotency: None,
    }
}

fn logged(store: &Seam) -> usize {
    store.committed.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_advance_is_evaluated_again_and_committed_once() {
    let store = Seam::new(Commits::Conflict(2));
    let state = state_over(Arc::clone(&store));
    let answer = run_evaluation(&state, job(None, snapshot(-60))).await;
    let Ok(Answer::Fresh(decision)) = answer else {
        panic!("expected a fresh decision");
    };
    assert!(decision.decision_id.is_some());
    assert_eq!(store.attempts.load(Ordering::SeqCst), 3);
    // The state is read again for every attempt: the evaluation runs
    // over the state that won.
    assert_eq!(store.reads.load(Ordering::SeqCst), 3);
    assert_eq!(logged(&store), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advances_that_keep_conflicting_answer_busy_and_log_nothing() {
    let store = Seam::new(Commits::Conflict(usize::MAX));
    let state = state_over(Arc::clone(&store));
    let Err(e) = run_evaluation(&state, job(None, snapshot(-60))).await else {
        panic!("expected 503");
    };
    assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(e.message.contains("retried 16 times"), "{}", e.message);
    assert_eq!(store.attempts.load(Ordering::SeqCst), decide::MAX_ATTEMPTS);
    assert_eq!(logged(&store), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_commit_answers_503_with_no_decision() {
    let store = Seam::new(Commits::Fail);
    let state = state_over(Arc::clone(&store));
    let Err(e) = run_evaluation(&state, job(None, snapshot(-60))).await else {
        panic!("expected 503");
    };
    assert_eq!(
        (e.status, e.code),
        (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
    );
    assert!(e.message.contains("disk full"), "{}", e.message);
    assert_eq!(store.attempts.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_answered_first_is_replayed_not_decided_again() {
    let store = Seam::new(Commits::Taken);
    let state = state_over(Arc::clone(&store));
    let Ok(Answer::Replayed(answer)) = run_evaluation(&state, job(None, snapshot(-60))).await
    else {
        panic!("expected the stored answer");
    };
    assert_eq!(answer.decision_id, "first");
    assert_eq!(store.attempts.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_stage_is_refused_before_state_is_read() {
    let store = Seam::new(Commits::Conflict(0));
    let state = state_over(Arc::clone(&store));
    let Err(e) = run_evaluation(&state, job(Some("nope\u{1b}[31m"), snapshot(-60))).await else {
        panic!("expected 404");
    };
    assert_eq!((e.status, e.code), (StatusCode::NOT_FOUND, "unknown_stage"));
    assert!(!e.message.contains('\u{1b}'), "{}", e.message);
    assert_eq!(store.reads.load(Ordering::SeqCst), 0);
    assert_eq!(store.attempts.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_from_past_the_clock_is_refused_and_nothing_committed() {
    let store = Seam::new(Commits::Conflict(0));
    let state = state_over(Arc::clone(&store));
    let Err(e) = run_evaluation(&state, job(None, snapshot(3600))).await else {
        panic!("expected 422");
    };
    assert_eq!(e.code, "taken_at_in_future");
    assert_eq!(store.attempts.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_ahead_within_the_skew_is_judged_but_moves_no_state() {
    let store = Seam::new(Commits::Conflict(0));
    let state = state_over(Arc::clone(&store));
    let Ok(Answer::Fresh(decision)) = run_evaluation(&state, job(None, snapshot(20))).await else {
        panic!("expected a decision");
    };
    assert!(decision.decision_id.is_some());
    assert_eq!(*store.last.lock().expect("lock"), Some((false, 0)));
    // The same evaluation from the past advances both triggers' state.
    let _ = run_evaluation(&state, job(None, snapshot(-60))).await;
    let triggers = state
        .policies()
        .get_with_budget("canary")
        .map(|(p, _)| p.policy.triggers.len());
    assert!(triggers > Some(0));
    assert_eq!(
        *store.last.lock().expect("lock"),
        triggers.map(|n| (true, n))
    );
}
