//! The load generator: a few clients per user log in, read, refresh, log
//! out, end sessions everywhere, revoke the others and stage refresh-token
//! thefts, and keep trying every credential they believe ended on every
//! node. Every request is recorded in the [`History`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::cluster::{NodeView, NODES};
use super::history::{CredId, History, Op, Outcome, Record};
use crate::support::PASSWORD;

/// The client's own limit on one request; past the checker's deadline, so
/// that a hung request is recorded (as slow) instead of hanging the run.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long after a refresh its old refresh token may be presented as a
/// theft: the nodes' one-second grace window plus a margin.
const THEFT_AFTER: Duration = Duration::from_millis(1600);

/// At most this many believed-ended credentials are kept for retries.
const ENDED_KEPT: usize = 300;

/// Client ids from here on are probes, not load.
pub const PROBE_CLIENT: usize = 1000;

/// A small deterministic generator (SplitMix64): the schedule of operations
/// is reproducible from the seed printed with the run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The tokens of one credential.
#[derive(Debug, Clone)]
pub struct Credential {
    /// Its id in the history.
    pub id: CredId,
    /// Whose.
    pub user: usize,
    /// The session token, or the current access token.
    pub access: String,
    /// The current refresh token (token mode).
    pub refresh: Option<String>,
    /// The refresh token rotated away by the last refresh, and when.
    pub rotated: Option<(String, Instant)>,
}

/// One answer, timed.
#[derive(Debug)]
pub struct Exchange {
    /// How it ended.
    pub outcome: Outcome,
    /// The envelope's `data`, for a 200 with a JSON body.
    pub data: Option<Value>,
    /// When it was sent.
    pub invoked: Duration,
    /// When it was answered.
    pub completed: Duration,
    /// The credential a successful login created.
    pub issued: Option<CredId>,
}

/// What every client and probe shares.
pub struct Shared {
    /// The record.
    pub history: History,
    /// Where the nodes are.
    pub view: NodeView,
    /// The users' phones (the last is the probes').
    pub phones: Vec<String>,
    /// Token mode.
    pub signed: bool,
    http: reqwest::Client,
    creds: Mutex<HashMap<CredId, Credential>>,
    ended: Mutex<Vec<CredId>>,
    next_cred: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    /// Clients of `view`'s nodes, recording into `history`.
    pub fn new(history: History, view: NodeView, phones: Vec<String>, signed: bool) -> Arc<Self> {
        let http = reqwest::Client::builder().timeout(CLIENT_TIMEOUT).build().unwrap();
        Arc::new(Self {
            history,
            view,
            phones,
            signed,
            http,
            creds: Mutex::default(),
            ended: Mutex::default(),
            next_cred: AtomicU64::new(1),
            stop: AtomicBool::new(false),
        })
    }

    /// Asks every client to finish its current operation and return.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// The tokens of `id`.
    pub fn credential(&self, id: CredId) -> Credential {
        self.creds.lock().unwrap()[&id].clone()
    }

    fn update(&self, id: CredId, f: impl FnOnce(&mut Credential)) {
        if let Some(c) = self.creds.lock().unwrap().get_mut(&id) {
            f(c);
        }
    }

    /// Remembers `id` as (believed) ended, for everyone's retries.
    fn mark_ended(&self, id: CredId) {
        let mut ended = self.ended.lock().unwrap();
        if !ended.contains(&id) {
            if ended.len() >= ENDED_KEPT {
                ended.remove(0);
            }
            ended.push(id);
        }
    }

    /// One believed-ended credential: half the time among the ten most
    /// recent (stale windows open right after an end), else any.
    fn random_ended(&self, rng: &mut Rng) -> Option<CredId> {
        let ended = self.ended.lock().unwrap();
        let n = ended.len();
        let window = if rng.below(2) == 0 { n.min(10) } else { n };
        (n > 0).then(|| ended[n - 1 - rng.below(window)])
    }

    /// Sends `request`, timing it against the history's clock.
    pub async fn exchange(&self, request: reqwest::RequestBuilder) -> Exchange {
        let invoked = self.history.now();
        let (outcome, data) = match request.send().await {
            Ok(response) => read_answer(response).await,
            Err(e) => (Outcome::Transport(describe(&e)), None),
        };
        Exchange { outcome, data, invoked, completed: self.history.now(), issued: None }
    }

    /// Sends `op` for `user` (with `cred`, unless a login) to `node` and
    /// records it; a successful login registers and returns its credential.
    pub async fn call(&self, client: usize, node: usize, op: Op, user: usize, cred: Option<&Credential>) -> Exchange {
        let request = self.request(node, op, user, cred);
        let mut ex = self.exchange(request).await;
        ex.issued = match (op, &ex.data) {
            (Op::Login, Some(data)) if ex.outcome.ok() => self.issue(user, data),
            _ => None,
        };
        self.history.record(Record {
            client,
            node,
            op,
            user,
            cred: cred.map(|c| c.id),
            issued: ex.issued,
            invoked: ex.invoked,
            completed: ex.completed,
            outcome: ex.outcome.clone(),
        });
        ex
    }

    fn request(&self, node: usize, op: Op, user: usize, cred: Option<&Credential>) -> reqwest::RequestBuilder {
        let url = |path: &str| self.view.url(node, path);
        let access = || cred.map(|c| c.access.clone()).unwrap_or_default();
        match op {
            Op::Login => self
                .http
                .post(url("/user/login"))
                .header("x-auth-mode", "header")
                .json(&json!({"telephone": self.phones[user], "password": PASSWORD})),
            Op::Me => self.http.get(url("/user/me")).bearer_auth(access()),
            Op::Logout => self.http.post(url("/user/logout")).bearer_auth(access()),
            Op::LogoutEverywhere => self.http.post(url("/user/logout-everywhere")).bearer_auth(access()),
            Op::RevokeOthers => self.http.delete(url("/user/sessions")).bearer_auth(access()),
            Op::Refresh => {
                let token = cred.and_then(|c| c.refresh.clone()).unwrap_or_default();
                self.http.post(url("/auth/refresh")).json(&json!({"refreshToken": token}))
            }
            Op::Theft => {
                let token = cred.and_then(|c| c.rotated.clone()).map(|(t, _)| t).unwrap_or_default();
                self.http.post(url("/auth/refresh")).json(&json!({"refreshToken": token}))
            }
        }
    }

    fn issue(&self, user: usize, data: &Value) -> Option<CredId> {
        let access = data["token"].as_str()?.to_owned();
        let refresh = data["refreshToken"].as_str().map(str::to_owned);
        let id = self.next_cred.fetch_add(1, Ordering::SeqCst);
        self.creds.lock().unwrap().insert(id, Credential { id, user, access, refresh, rotated: None });
        Some(id)
    }
}

async fn read_answer(response: reqwest::Response) -> (Outcome, Option<Value>) {
    let code = response.status().as_u16();
    let retry_after = response.headers().contains_key("retry-after");
    let body: Option<Value> = response.json().await.ok();
    let err_code = body.as_ref().and_then(|b| b["data"]["errCode"].as_u64());
    let data = body.filter(|_| code == 200).map(|b| b["data"].clone());
    (Outcome::Status { code, retry_after, err_code }, data)
}

/// A short reason for a failed request.
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "request"
    };
    let mut source: &dyn std::error::Error = e;
    while let Some(next) = source.source() {
        source = next;
    }
    format!("{kind}: {source}")
}

/// Runs one load client until stopped or after `max_ops` operations.
pub async fn client(shared: Arc<Shared>, client: usize, user: usize, seed: u64, max_ops: usize) {
    let mut rng = Rng::new(seed);
    let mut live: Option<CredId> = None;
    for _ in 0..max_ops {
        if shared.stopped() {
            break;
        }
        live = match live {
            None => login(&shared, client, user, &mut rng).await,
            Some(cred) => step(&shared, client, cred, &mut rng).await,
        };
        tokio::time::sleep(Duration::from_millis(5 + rng.below(15) as u64)).await;
    }
}

/// Logs in on a random node, then reads once on every node, as a client
/// behind a load balancer would: every node then has the session in its
/// near cache (or the token in its verified cache), which is what a missed
/// invalidation would wrongly answer from.
async fn login(shared: &Shared, client: usize, user: usize, rng: &mut Rng) -> Option<CredId> {
    let id = shared.call(client, rng.below(NODES), Op::Login, user, None).await.issued?;
    let c = shared.credential(id);
    let mut live = Some(id);
    for node in 0..NODES {
        let ex = shared.call(client, node, Op::Me, user, Some(&c)).await;
        live = live.and(alive_after(shared, id, &ex));
    }
    live
}

/// One operation on the live credential `cred`; returns it if still live.
async fn step(shared: &Shared, client: usize, cred: CredId, rng: &mut Rng) -> Option<CredId> {
    let roll = rng.below(100);
    match roll {
        0..45 => read(shared, client, cred, rng).await,
        45..55 if shared.signed => refresh(shared, client, cred, rng).await,
        55..63 => logout(shared, client, cred, rng).await,
        63..65 => end_all(shared, client, cred, rng, Op::LogoutEverywhere).await,
        65..69 => end_all(shared, client, cred, rng, Op::RevokeOthers).await,
        69..72 if shared.signed => theft(shared, client, cred, rng).await,
        _ => {
            retry_ended(shared, client, rng).await;
            Some(cred)
        }
    }
}

async fn read(shared: &Shared, client: usize, cred: CredId, rng: &mut Rng) -> Option<CredId> {
    let c = shared.credential(cred);
    let ex = shared.call(client, rng.below(NODES), Op::Me, c.user, Some(&c)).await;
    alive_after(shared, cred, &ex)
}

/// A 401 means someone (another client's logout everywhere, a theft
/// verdict, a wiped Redis) ended it: drop it and remember it for retries.
fn alive_after(shared: &Shared, cred: CredId, ex: &Exchange) -> Option<CredId> {
    if ex.outcome.code() == Some(401) {
        shared.mark_ended(cred);
        return None;
    }
    Some(cred)
}

async fn refresh(shared: &Shared, client: usize, cred: CredId, rng: &mut Rng) -> Option<CredId> {
    let c = shared.credential(cred);
    let ex = shared.call(client, rng.below(NODES), Op::Refresh, c.user, Some(&c)).await;
    if let (true, Some(data)) = (ex.outcome.ok(), &ex.data) {
        let access = data["accessToken"].as_str().map(str::to_owned);
        let refresh = data["refreshToken"].as_str().map(str::to_owned);
        shared.update(cred, |c| {
            c.rotated = c.refresh.take().map(|old| (old, Instant::now()));
            c.access = access.unwrap_or_default();
            c.refresh = refresh;
        });
    }
    alive_after(shared, cred, &ex)
}

/// Logs out on one node, then asks both others until they refuse too: the
/// propagation time (and, under a partition, the stale window).
async fn logout(shared: &Shared, client: usize, cred: CredId, rng: &mut Rng) -> Option<CredId> {
    let c = shared.credential(cred);
    let node = rng.below(NODES);
    let ex = shared.call(client, node, Op::Logout, c.user, Some(&c)).await;
    if !ex.outcome.ok() {
        return alive_after(shared, cred, &ex);
    }
    shared.mark_ended(cred);
    let (a, b) = ((node + 1) % NODES, (node + 2) % NODES);
    tokio::join!(
        measure_propagation(shared, client, &c, a, ex.completed),
        measure_propagation(shared, client, &c, b, ex.completed)
    );
    None
}

async fn measure_propagation(shared: &Shared, client: usize, c: &Credential, node: usize, acknowledged: Duration) {
    let give_up = acknowledged + Duration::from_secs(1);
    while shared.history.now() < give_up {
        let ex = shared.call(client, node, Op::Me, c.user, Some(c)).await;
        match ex.outcome.code() {
            Some(401) => {
                shared.history.with(|r| r.propagation.push((acknowledged, ex.completed - acknowledged)));
                return;
            }
            Some(200) => tokio::time::sleep(Duration::from_millis(2)).await,
            _ => return, // 503 or no answer: not measurable now
        }
    }
}

/// Logout everywhere (ends this one too) or revoke the others (keeps it).
async fn end_all(shared: &Shared, client: usize, cred: CredId, rng: &mut Rng, op: Op) -> Option<CredId> {
    let c = shared.credential(cred);
    let ex = shared.call(client, rng.below(NODES), op, c.user, Some(&c)).await;
    if op == Op::LogoutEverywhere && ex.outcome.ok() {
        shared.mark_ended(cred);
        return None;
    }
    alive_after(shared, cred, &ex)
}

/// Presents the refresh token rotated away by the last refresh, once the
/// grace window has passed: the node must revoke the whole family.
async fn theft(shared: &Shared, client: usize, cred: CredId, rng: &mut Rng) -> Option<CredId> {
    let c = shared.credential(cred);
    match &c.rotated {
        Some((_, at)) if at.elapsed() >= THEFT_AFTER => {}
        _ => return read(shared, client, cred, rng).await,
    }
    let ex = shared.call(client, rng.below(NODES), Op::Theft, c.user, Some(&c)).await;
    alive_after(shared, cred, &ex)
}

/// Tries a believed-ended credential on every node (and its refresh token
/// on one, in token mode).
async fn retry_ended(shared: &Shared, client: usize, rng: &mut Rng) {
    let Some(id) = shared.random_ended(rng) else { return };
    let c = shared.credential(id);
    for node in 0..NODES {
        shared.call(client, node, Op::Me, c.user, Some(&c)).await;
    }
    if c.refresh.is_some() {
        shared.call(client, rng.below(NODES), Op::Refresh, c.user, Some(&c)).await;
    }
}
