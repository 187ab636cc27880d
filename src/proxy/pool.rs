//! Server connection pools (`--pool-mode session|transaction`): one pool
//! per (user, database, and what else makes server connections differ),
//! at most `--pool-size` server connections each, idle ones kept up to
//! `--server-idle-timeout` and none past `--server-lifetime`; a client
//! waits up to `--pool-timeout` for one. New upstream logins, across the
//! proxy's pools, start at most `--max-logins-per-second`.
//!
//! The engine-specific parts (logging in, resetting, relaying) live with
//! each engine; here is only the bookkeeping, written so that a lease
//! dropped anywhere (a client gone mid-query, a task cut at shutdown)
//! gives its slot back.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::oneshot;

use crate::BoxFuture;
use crate::ops::metrics::{PoolGauges, metrics};
use crate::target::EngineKind;

/// `--pool-mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    /// One upstream login per client connection (no pool).
    #[default]
    None,
    /// A server connection per client connection, reset and reused after
    /// the client leaves.
    Session,
    /// A server connection per transaction (PostgreSQL only).
    Transaction,
}

/// The pool flags.
#[derive(Clone)]
pub(crate) struct Settings {
    pub mode: PoolMode,
    pub size: usize,
    pub min_size: usize,
    pub idle_timeout: Duration,
    pub lifetime: Duration,
    pub timeout: Duration,
    pub logins: Arc<LoginRate>,
}

impl Settings {
    /// No pool (`--pool-mode none`).
    pub(crate) fn none() -> Self {
        Self {
            mode: PoolMode::None,
            size: 1,
            min_size: 0,
            idle_timeout: Duration::ZERO,
            lifetime: Duration::ZERO,
            timeout: Duration::ZERO,
            logins: Arc::new(LoginRate::new(1)),
        }
    }
}

/// A pooled server connection, as the pool sees it.
pub(crate) trait Conn: Send + 'static {
    /// Whether the server ended the connection (or sent something) while
    /// it sat idle: looked at without waiting.
    fn is_broken(&mut self) -> bool;
    /// Ends the session politely.
    fn terminate(self) -> BoxFuture<'static, ()>;
}

/// Whether an idle server connection's stream has anything to read, an
/// end or an error, looked at without waiting: an idle server says
/// nothing, so any of these means it is gone (a FATAL before it went
/// away, a closed socket).
pub(crate) fn said_something<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> bool {
    let mut byte = [0_u8; 1];
    let mut buf = tokio::io::ReadBuf::new(&mut byte);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    !std::pin::Pin::new(stream)
        .poll_read(&mut cx, &mut buf)
        .is_pending()
}

/// New upstream logins, spaced at most `per_second`.
pub(crate) struct LoginRate {
    every: Duration,
    next: Mutex<Instant>,
}

impl LoginRate {
    pub(crate) fn new(per_second: u32) -> Self {
        Self {
            every: Duration::from_secs(1) / per_second.max(1),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits for this login's turn (a storm queues here instead of being
    /// throttled by the database).
    pub(crate) async fn wait(&self) {
        let at = {
            let mut next = lock(&self.next);
            let now = Instant::now();
            let at = (*next).max(now);
            *next = at + self.every;
            at
        };
        tokio::time::sleep_until(at.into()).await;
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Idle<C: Conn> {
    conn: C,
    created: Instant,
    since: Instant,
}

struct State<C: Conn> {
    idle: Vec<Idle<C>>,
    active: usize,
    opening: usize,
    waiters: VecDeque<oneshot::Sender<Grant<C>>>,
}

/// What a waiting client is handed: a connection, or the right to open one.
enum Grant<C: Conn> {
    Conn(Lease<C>),
    Slot(Slot<C>),
}

/// One pool.
pub(crate) struct Pool<C: Conn> {
    pub user: String,
    pub database: Option<String>,
    /// The rest of the pool's key (see [`Pools::get`]).
    pub extra: String,
    settings: Settings,
    state: Mutex<State<C>>,
    gauges: Option<PoolGauges>,
}

/// Why a client got no server connection.
pub(crate) enum AcquireError<E> {
    /// `--pool-timeout` passed.
    Timeout(Duration),
    /// Opening a new server connection failed.
    Open(E),
}

/// A server connection lent to one client. Dropped without
/// [`Lease::release`], the connection is closed and its slot freed.
pub(crate) struct Lease<C: Conn> {
    pool: Arc<Pool<C>>,
    conn: Option<C>,
    created: Instant,
    /// How long it sat idle before this lease (zero when new).
    pub idle_for: Duration,
    /// Given back (to the idle list or a waiting client).
    done: bool,
}

/// The right to open one server connection (counted as opening).
struct Slot<C: Conn> {
    pool: Arc<Pool<C>>,
    used: bool,
}

impl<C: Conn> Drop for Slot<C> {
    fn drop(&mut self) {
        if !self.used {
            self.pool.free_slot(false);
        }
    }
}

impl<C: Conn> Lease<C> {
    pub(crate) fn conn(&mut self) -> &mut C {
        // Present until release or drop, which consume the lease .
        self.conn.as_mut().unwrap_or_else(|| unreachable!())
    }

    /// Takes the connection out (a relay that owns its stream); the lease
    /// still holds its slot. Put back with [`Lease::put`], or the slot is
    /// freed when the lease is dropped.
    pub(crate) fn take(&mut self) -> Option<C> {
        self.conn.take()
    }

    pub(crate) fn put(&mut self, conn: C) {
        self.conn = Some(conn);
    }

    /// Gives the connection back for the next client (or to one waiting).
    pub(crate) fn release(self) {
        let pool = Arc::clone(&self.pool);
        if self.created.elapsed() >= pool.settings.lifetime || self.conn.is_none() {
            return; // dropped: closed, slot freed
        }
        let mut lease = self;
        loop {
            let waiter = {
                let mut s = lock(&pool.state);
                if let Some(w) = s.waiters.pop_front() {
                    w
                } else {
                    if let Some(conn) = lease.conn.take() {
                        s.active -= 1;
                        s.idle.push(Idle {
                            conn,
                            created: lease.created,
                            since: Instant::now(),
                        });
                    }
                    lease.done = true;
                    drop(s);
                    pool.gauge();
                    return;
                }
            };
            lease.idle_for = Duration::ZERO;
            match waiter.send(Grant::Conn(lease)) {
                Err(Grant::Conn(l)) => lease = l,
                Ok(()) | Err(Grant::Slot(_)) => return,
            }
        }
    }
}

impl<C: Conn> Drop for Lease<C> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let expired = self.created.elapsed() >= self.pool.settings.lifetime;
        self.pool
            .note_closed(if expired { "lifetime" } else { "broken" });
        if let Some(conn) = self.conn.take() {
            tokio::spawn(conn.terminate());
        }
        self.pool.free_slot(true);
    }
}

impl<C: Conn> Pool<C> {
    fn new(target: &str, kind: EngineKind, key: Key, settings: Settings) -> Self {
        let (user, database, extra) = key;
        Self {
            user,
            database,
            extra,
            settings,
            state: Mutex::new(State {
                idle: Vec::new(),
                active: 0,
                opening: 0,
                waiters: VecDeque::new(),
            }),
            gauges: metrics().map(|m| m.pool_gauges(target, kind)),
        }
    }

    /// A server connection: an idle one that still works, else a new one
    /// (`open`, after the login rate allows) while the pool has room, else
    /// the next one given back, for up to `--pool-timeout`.
    pub(crate) async fn acquire<E, F, Fut>(
        self: &Arc<Self>,
        open: F,
    ) -> Result<Lease<C>, AcquireError<E>>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<C, E>>,
    {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.settings.timeout;
        let got = self.acquire_until(deadline, &open).await;
        if let Some(g) = &self.gauges {
            g.waited(
                started.elapsed(),
                matches!(got, Err(AcquireError::Timeout(_))),
            );
        }
        got
    }

    async fn acquire_until<E, F, Fut>(
        self: &Arc<Self>,
        deadline: tokio::time::Instant,
        open: &F,
    ) -> Result<Lease<C>, AcquireError<E>>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<C, E>>,
    {
        loop {
            let (step, stale) = self.take_idle();
            for c in stale {
                tokio::spawn(c.terminate());
            }
            let grant = match step {
                Step::Lease(l) => return Ok(l),
                Step::Open(slot) => Grant::Slot(slot),
                Step::Wait(mut rx) => {
                    self.gauge();
                    let waited = tokio::time::timeout_at(deadline, &mut rx).await;
                    let got = match waited {
                        Ok(Ok(g)) => Some(g),
                        Ok(Err(_)) => None,
                        Err(_) => {
                            rx.close();
                            // Handed one as the time ran out: take it.
                            let Ok(g) = rx.try_recv() else {
                                self.gauge();
                                return Err(AcquireError::Timeout(self.settings.timeout));
                            };
                            Some(g)
                        }
                    };
                    match got {
                        Some(g) => g,
                        None => continue,
                    }
                }
            };
            match grant {
                Grant::Conn(mut lease) => {
                    if lease.conn().is_broken() {
                        self.note_closed("broken");
                        continue; // dropped: slot freed
                    }
                    return Ok(lease);
                }
                Grant::Slot(mut slot) => {
                    self.gauge();
                    self.settings.logins.wait().await;
                    let opened = open().await;
                    slot.used = true;
                    match opened {
                        Ok(conn) => {
                            {
                                let mut s = lock(&self.state);
                                s.opening -= 1;
                                s.active += 1;
                            }
                            self.gauge();
                            return Ok(Lease {
                                pool: Arc::clone(self),
                                conn: Some(conn),
                                created: Instant::now(),
                                idle_for: Duration::ZERO,
                                done: false,
                            });
                        }
                        Err(e) => {
                            self.free_slot(false);
                            return Err(AcquireError::Open(e));
                        }
                    }
                }
            }
        }
    }

    /// Under the lock: an idle connection (newest first; stale ones are
    /// handed back to be closed), else a slot to open one, else a place in
    /// the queue.
    fn take_idle(self: &Arc<Self>) -> (Step<C>, Vec<C>) {
        let mut stale = Vec::new();
        let mut s = lock(&self.state);
        while let Some(mut idle) = s.idle.pop() {
            if idle.created.elapsed() >= self.settings.lifetime {
                self.note_closed("lifetime");
                stale.push(idle.conn);
                continue;
            }
            if idle.conn.is_broken() {
                self.note_closed("broken");
                stale.push(idle.conn);
                continue;
            }
            s.active += 1;
            let lease = Lease {
                pool: Arc::clone(self),
                conn: Some(idle.conn),
                created: idle.created,
                idle_for: idle.since.elapsed(),
                done: false,
            };
            drop(s);
            self.gauge();
            return (Step::Lease(lease), stale);
        }
        if s.idle.len() + s.active + s.opening < self.settings.size {
            s.opening += 1;
            let slot = Slot {
                pool: Arc::clone(self),
                used: false,
            };
            return (Step::Open(slot), stale);
        }
        let (tx, rx) = oneshot::channel();
        s.waiters.push_back(tx);
        (Step::Wait(rx), stale)
    }

    /// A server connection (active, or opening) is gone: its place goes to
    /// the first client still waiting, as the right to open a new one.
    fn free_slot(self: &Arc<Self>, was_active: bool) {
        let mut from_active = was_active;
        loop {
            let waiter = {
                let mut s = lock(&self.state);
                if from_active {
                    s.active -= 1;
                } else {
                    s.opening -= 1;
                }
                match s.waiters.pop_front() {
                    Some(w) => {
                        s.opening += 1;
                        w
                    }
                    None => break,
                }
            };
            let slot = Slot {
                pool: Arc::clone(self),
                used: false,
            };
            match waiter.send(Grant::Slot(slot)) {
                Err(Grant::Slot(mut slot)) => {
                    slot.used = true;
                    from_active = false;
                }
                Ok(()) | Err(Grant::Conn(_)) => break,
            }
        }
        self.gauge();
    }

    fn note_closed(&self, reason: &str) {
        if let Some(g) = &self.gauges {
            g.closed(reason);
        }
    }

    /// Closes idle connections past `--server-idle-timeout` or
    /// `--server-lifetime`, or broken; says how many more are needed to
    /// keep `--min-pool-size` warm.
    fn reap(&self) -> (Vec<C>, usize) {
        let mut gone = Vec::new();
        let mut s = lock(&self.state);
        let mut kept = Vec::with_capacity(s.idle.len());
        for mut idle in std::mem::take(&mut s.idle) {
            let reason = if idle.since.elapsed() >= self.settings.idle_timeout {
                Some("idle_timeout")
            } else if idle.created.elapsed() >= self.settings.lifetime {
                Some("lifetime")
            } else if idle.conn.is_broken() {
                Some("broken")
            } else {
                None
            };
            match reason {
                Some(r) => {
                    self.note_closed(r);
                    gone.push(idle.conn);
                }
                None => kept.push(idle),
            }
        }
        s.idle = kept;
        let have = s.idle.len() + s.active + s.opening;
        let missing = self
            .settings
            .min_size
            .min(self.settings.size)
            .saturating_sub(have);
        (gone, missing)
    }

    /// Opens a connection into the idle list (for `--min-pool-size`).
    async fn warm<E, Fut: Future<Output = Result<C, E>>>(self: &Arc<Self>, open: Fut) {
        {
            let mut s = lock(&self.state);
            if s.idle.len() + s.active + s.opening >= self.settings.size {
                return;
            }
            s.opening += 1;
        }
        self.settings.logins.wait().await;
        match open.await {
            Ok(conn) => {
                {
                    let mut s = lock(&self.state);
                    s.opening -= 1;
                    s.active += 1;
                }
                Lease {
                    pool: Arc::clone(self),
                    conn: Some(conn),
                    created: Instant::now(),
                    idle_for: Duration::ZERO,
                    done: false,
                }
                .release();
            }
            Err(_) => self.free_slot(false),
        }
    }

    /// Refreshes the gauges (and counts) from the state.
    fn gauge(&self) {
        if let Some(g) = &self.gauges {
            let s = lock(&self.state);
            g.set(s.active, s.idle.len(), s.opening, s.waiters.len());
        }
    }

    fn snapshot(&self, mode: PoolMode) -> PoolView {
        let s = lock(&self.state);
        PoolView {
            user: crate::text::Untrusted(&self.user).to_string(),
            database: self
                .database
                .as_deref()
                .map(|d| crate::text::Untrusted(d).to_string()),
            mode,
            size: self.settings.size,
            active: s.active,
            idle: s.idle.len(),
            opening: s.opening,
            waiting: s.waiters.len(),
        }
    }
}

enum Step<C: Conn> {
    Lease(Lease<C>),
    Open(Slot<C>),
    Wait(oneshot::Receiver<Grant<C>>),
}

/// One pool as `/pools` shows it.
#[derive(Serialize)]
pub(crate) struct PoolView {
    pub user: String,
    pub database: Option<String>,
    pub mode: PoolMode,
    pub size: usize,
    pub active: usize,
    pub idle: usize,
    pub opening: usize,
    pub waiting: usize,
}

/// A pool's key: user, database, and what else separates its server
/// connections.
type Key = (String, Option<String>, String);

/// The pools of one proxy, by key.
pub(crate) struct Pools<C: Conn> {
    target: String,
    kind: EngineKind,
    pub settings: Settings,
    by_key: Mutex<HashMap<Key, Arc<Pool<C>>>>,
}

impl<C: Conn> Pools<C> {
    pub(crate) fn new(target: &str, kind: EngineKind, settings: Settings) -> Self {
        Self {
            target: target.to_string(),
            kind,
            settings,
            by_key: Mutex::new(HashMap::new()),
        }
    }

    /// The pool for `user` on `database`; `extra` separates server
    /// connections that cannot serve each other's clients (MySQL's
    /// capability flags and character set).
    pub(crate) fn get(&self, user: &str, database: Option<&str>, extra: &str) -> Arc<Pool<C>> {
        let key = (
            user.to_string(),
            database.map(str::to_string),
            extra.to_string(),
        );
        let mut pools = lock(&self.by_key);
        Arc::clone(pools.entry(key.clone()).or_insert_with(|| {
            Arc::new(Pool::new(
                &self.target,
                self.kind,
                key,
                self.settings.clone(),
            ))
        }))
    }

    fn all(&self) -> Vec<Arc<Pool<C>>> {
        lock(&self.by_key).values().cloned().collect()
    }

    /// Every pool, for `/pools`.
    pub(crate) fn views(&self) -> Vec<PoolView> {
        let mut v: Vec<_> = self
            .all()
            .iter()
            .map(|p| p.snapshot(self.settings.mode))
            .collect();
        v.sort_by(|a, b| (&a.user, &a.database).cmp(&(&b.user, &b.database)));
        v
    }

    /// Runs until dropped: once a second, closes idle connections that
    /// aged or broke and opens what `--min-pool-size` asks for (`open`
    /// makes one for a pool).
    pub(crate) async fn maintain<E, Fut>(self: Arc<Self>, open: impl Fn(Arc<Pool<C>>) -> Fut)
    where
        Fut: Future<Output = Result<C, E>> + Send,
    {
        let mut tick = tokio::time::interval(MAINTAIN_EVERY);
        loop {
            tick.tick().await;
            for pool in self.all() {
                let (gone, missing) = pool.reap();
                for c in gone {
                    tokio::spawn(c.terminate());
                }
                for _ in 0..missing {
                    pool.warm(open(Arc::clone(&pool))).await;
                }
                pool.gauge();
            }
        }
    }
}

const MAINTAIN_EVERY: Duration = Duration::from_secs(1);

/// `/pools` for every proxy of the process.
pub(crate) trait PoolList: Send + Sync {
    fn target(&self) -> &str;
    fn engine(&self) -> &'static str;
    fn views(&self) -> Vec<PoolView>;
}

impl<C: Conn> PoolList for Pools<C> {
    fn target(&self) -> &str {
        &self.target
    }

    fn engine(&self) -> &'static str {
        self.kind.name()
    }

    fn views(&self) -> Vec<PoolView> {
        Pools::views(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Fake(bool);

    impl Conn for Fake {
        fn is_broken(&mut self) -> bool {
            self.0
        }
        fn terminate(self) -> BoxFuture<'static, ()> {
            Box::pin(async {})
        }
    }

    fn settings(size: usize, timeout: Duration) -> Settings {
        Settings {
            mode: PoolMode::Session,
            size,
            min_size: 0,
            idle_timeout: Duration::from_mins(10),
            lifetime: Duration::from_hours(1),
            timeout,
            logins: Arc::new(LoginRate::new(100_000)),
        }
    }

    #[tokio::test]
    async fn reuses_and_bounds_and_times_out() {
        let pools: Pools<Fake> = Pools::new(
            "t",
            EngineKind::Postgres,
            settings(2, Duration::from_millis(200)),
        );
        let pool = pools.get("u", Some("d"), "");
        let opened = Arc::new(AtomicUsize::new(0));
        let open = || {
            let opened = Arc::clone(&opened);
            async move {
                opened.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ()>(Fake(false))
            }
        };
        let a = pool.acquire(open).await.ok().unwrap();
        let b = pool.acquire(open).await.ok().unwrap();
        assert!(matches!(
            pool.acquire(open).await,
            Err(AcquireError::Timeout(_))
        ));
        a.release();
        let c = pool.acquire(open).await.ok().unwrap();
        assert_eq!(
            opened.load(Ordering::SeqCst),
            2,
            "the released one is reused"
        );
        drop(b); // broken: its slot frees
        let d = pool.acquire(open).await.ok().unwrap();
        assert_eq!(opened.load(Ordering::SeqCst), 3);
        let view = pool.snapshot(PoolMode::Session);
        assert_eq!((view.active, view.idle, view.waiting), (2, 0, 0));
        drop((c, d));
    }

    #[tokio::test]
    async fn a_waiting_client_gets_the_released_connection() {
        let pools: Pools<Fake> = Pools::new(
            "t",
            EngineKind::Postgres,
            settings(1, Duration::from_secs(30)),
        );
        let pool = pools.get("u", None, "");
        let open = || async { Ok::<_, ()>(Fake(false)) };
        let a = pool.acquire(open).await.ok().unwrap();
        let waiting = {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move { pool.acquire(open).await.is_ok() })
        };
        while pool.snapshot(PoolMode::Session).waiting == 0 {
            tokio::task::yield_now().await;
        }
        a.release();
        assert!(waiting.await.unwrap());
    }

    #[tokio::test]
    async fn broken_idle_connections_are_not_handed_out() {
        let pools: Pools<Fake> = Pools::new(
            "t",
            EngineKind::Postgres,
            settings(1, Duration::from_secs(1)),
        );
        let pool = pools.get("u", None, "");
        let a = pool
            .acquire(|| async { Ok::<_, ()>(Fake(true)) })
            .await
            .ok()
            .unwrap();
        a.release();
        let b = pool
            .acquire(|| async { Ok::<_, ()>(Fake(false)) })
            .await
            .ok()
            .unwrap();
        assert!(
            !b.conn.as_ref().unwrap().0,
            "a new connection, not the broken one"
        );
    }
}
