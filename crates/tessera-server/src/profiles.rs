//! Profiles by user id for "who am I", kept in this node's memory.
//!
//! The session store never holds a profile: a Redis dump must show no
//! phone number or name. So that `GET /user/me` still costs no database
//! query on a warm path, each node keeps the profiles it has served (or
//! seen at login) for a while, bounded in number and age.
//!
//! What is kept is `/user/me`'s data, serialized once, and nothing else:
//! that read is the hottest of the service, and its answer only changes
//! with the profile. The data sits inside the cache's own entry (`Data`),
//! and the entry is kept small (a 4-byte deadline and the data in place:
//! ~120 bytes with the cache's own fields, half of what it was), because
//! with thousands of users the entry is all a read finds in the CPU's
//! caches and each line of it is a miss: each pointer followed from it to
//! a shared allocation, and each reference count bumped there, was one
//! more (the profile path was ~14 % of a read's CPU; keeping the answer in
//! place made a read 4 % cheaper; halving the entry was within a load
//! run's noise, and keeps half the memory: BENCHMARKS.md). The answer's
//! envelope is put around the data when it is sent; the rarer reads that
//! need the record decode it from the data.
//!
//! Nothing changes a profile today but registration, so a copy is only
//! ever stale by being absent. A route that edits profiles must call
//! [`Profiles::forget`] on every node (as sessions are invalidated), or
//! accept [`Profiles::MAX_AGE`] of staleness.
//!
//! Each copy is served for its own time, between four fifths of
//! [`Profiles::MAX_AGE`] and all of it, spread by user id: profiles read
//! together (a node's warm-up, a burst of logins) would otherwise all lapse
//! in the same second, every `MAX_AGE` from then on, and send that many
//! queries to the user database at once.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use quick_cache::sync::Cache;

use crate::envelope::success_around;
use crate::routes::responses::UserResponse;
use crate::storage::StorageError;
use crate::users::{User, Users};

/// The user repository with this node's profile cache in front of it
/// (quick_cache, as the library's near cache: bounded, no global lock).
#[derive(Debug)]
pub struct Profiles {
    users: Users,
    cache: Cache<i64, Kept>,
}

/// One kept profile: its answer's data, and until when it is served.
#[derive(Debug, Clone)]
struct Kept {
    /// In [`seconds_now`]'s count: four bytes, not an `Instant`'s sixteen.
    fresh_until: u32,
    data: Data,
}

/// `/user/me`'s data (the profile as the answer serializes it), in place
/// when it fits (a seven-digit id with a name of up to 13 bytes: four
/// Chinese characters, or 13 letters): taking it is then a copy out of the
/// entry the lookup already read, with no reference count to bump.
#[derive(Debug, Clone)]
enum Data {
    Inline { len: u8, bytes: [u8; Data::INLINE] },
    Shared(Bytes),
}

impl Data {
    /// Room in place: the most that keeps a [`Kept`] at 96 bytes (its
    /// deadline, this enum's tag and length, the bytes).
    const INLINE: usize = 86;

    fn new(user: &UserResponse) -> Self {
        let json = serde_json::to_vec(user).expect("response types serialize to JSON infallibly");
        if json.len() > Self::INLINE {
            return Self::Shared(json.into());
        }
        let mut bytes = [0; Self::INLINE];
        bytes[..json.len()].copy_from_slice(&json);
        Self::Inline { len: json.len() as u8, bytes }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Shared(json) => json,
        }
    }

    /// `/user/me`'s whole answer body.
    fn answer(&self) -> Bytes {
        success_around(self.as_slice())
    }

    /// The profile the data was serialized from; `None` only if `User`
    /// and the answer's shape ever drift apart (the tests would say so),
    /// in which case the caller reads the database rather than fail.
    fn user(&self) -> Option<User> {
        serde_json::from_slice::<User>(self.as_slice()).ok()
    }
}

/// Whole seconds since this process first asked: the one clock the
/// deadlines of [`Kept`] are counted on.
fn seconds_now() -> u32 {
    static START: OnceLock<Instant> = OnceLock::new();
    u32::try_from(START.get_or_init(Instant::now).elapsed().as_secs()).unwrap_or(u32::MAX)
}

impl Profiles {
    /// The longest a copy is served before the database is asked again
    /// (each copy has its own, a little shorter: see the module doc).
    pub const MAX_AGE: Duration = Duration::from_secs(300);
    /// Profiles kept at most (about 200 bytes each).
    pub const CAPACITY: usize = 100_000;

    /// A cache of [`Profiles::CAPACITY`] profiles in front of `users`.
    pub fn new(users: Users) -> Self {
        Self::with_capacity(users, Self::CAPACITY)
    }

    fn with_capacity(users: Users, capacity: usize) -> Self {
        Self { users, cache: Cache::new(capacity.max(1)) }
    }

    /// The profile of user `id`: from memory when a fresh copy is there,
    /// else from the database (and kept). `None`: no such user.
    pub async fn get(&self, id: i64) -> Result<Option<User>, StorageError> {
        if let Some(user) = self.cached(id).and_then(|data| data.user()) {
            return Ok(Some(user));
        }
        Ok(self.users.by_id(id).await?.inspect(|user| {
            self.kept(user.clone());
        }))
    }

    /// `GET /user/me`'s answer body for user `id`, as [`Profiles::get`]
    /// finds the profile. `None`: no such user.
    pub async fn me_answer(&self, id: i64) -> Result<Option<Bytes>, StorageError> {
        if let Some(data) = self.cached(id) {
            return Ok(Some(data.answer()));
        }
        Ok(self.users.by_id(id).await?.map(|user| self.kept(user)))
    }

    /// Keeps a profile just read elsewhere (at login).
    pub fn keep(&self, user: User) {
        self.kept(user);
    }

    /// Keeps `user`'s answer; returns it.
    fn kept(&self, user: User) -> Bytes {
        let id = user.id;
        let data = Data::new(&UserResponse::from(user));
        let answer = data.answer();
        let fresh_until = seconds_now().saturating_add(lifetime(id).as_secs() as u32);
        self.cache.insert(id, Kept { fresh_until, data });
        answer
    }

    /// Drops this node's copy of user `id`'s profile.
    pub fn forget(&self, id: i64) {
        self.cache.remove(&id);
    }

    fn cached(&self, id: i64) -> Option<Data> {
        self.cache.get(&id).filter(|kept| seconds_now() < kept.fresh_until).map(|kept| kept.data)
    }
}

/// How long user `id`'s copy is served: [`Profiles::MAX_AGE`] less up to a
/// fifth of it, the share picked by a multiplicative hash of the id, so
/// that neighbouring ids (users registered one after another) land far
/// apart in the window. The same for every copy of one user, which is all
/// the spread needs: copies read together lapse at different times, and
/// their next reads come back apart.
fn lifetime(id: i64) -> Duration {
    let window = (Profiles::MAX_AGE / 5).as_millis() as u64;
    // The top 32 bits of the product: the well-mixed ones.
    let share = (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
    Profiles::MAX_AGE - Duration::from_millis((window * share) >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::new_user::RegistrationFields;
    use crate::domain::NewUser;
    use crate::envelope::Success;

    fn user(id: i64) -> User {
        User { id, name: format!("u{id}"), gender: 1, age: 30, telephone: format!("+86138000000{id:02}") }
    }

    async fn profiles(capacity: usize) -> (Profiles, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("users.db").display());
        let users = Users::connect(&url).await.unwrap();
        (Profiles::with_capacity(users, capacity), dir)
    }

    #[tokio::test]
    async fn a_kept_profile_is_served_without_the_database() {
        let (profiles, _dir) = profiles(10).await;
        // User 7 is in no database: only the cache can answer for it.
        assert!(profiles.get(7).await.unwrap().is_none());
        profiles.keep(user(7));
        assert_eq!(profiles.get(7).await.unwrap().unwrap().name, "u7");
        let me = profiles.me_answer(7).await.unwrap().unwrap();
        assert_eq!(me, Success(UserResponse::from(user(7))).to_body(), "the answer is the serializer's");
        profiles.forget(7);
        assert!(profiles.get(7).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_profile_too_long_to_keep_in_place_is_served_the_same() {
        let (profiles, _dir) = profiles(10).await;
        // 64 characters of three bytes each: far past the room in place.
        let long = User { name: "名".repeat(64), ..user(8) };
        let answer = Success(UserResponse::from(long.clone())).to_body();
        assert!(answer.len() > Data::INLINE);
        profiles.keep(long.clone());
        assert!(matches!(profiles.cached(8), Some(Data::Shared(_))));
        assert_eq!(profiles.me_answer(8).await.unwrap().unwrap(), answer);
        assert_eq!(profiles.get(8).await.unwrap().unwrap(), long);
    }

    #[tokio::test]
    async fn a_profile_kept_in_place_decodes_to_the_record_it_came_from() {
        let (profiles, _dir) = profiles(10).await;
        let quoted = User { name: "Zoë \"Q\" O'Brien".into(), ..user(9) };
        profiles.keep(quoted.clone());
        assert!(matches!(profiles.cached(9), Some(Data::Inline { .. })));
        assert_eq!(profiles.get(9).await.unwrap().unwrap(), quoted);
        let answer = Success(UserResponse::from(quoted)).to_body();
        assert_eq!(profiles.me_answer(9).await.unwrap().unwrap(), answer, "the answer is the serializer's");
    }

    #[test]
    fn an_entry_stays_small_with_a_typical_profile_in_place() {
        assert!(std::mem::size_of::<Kept>() <= 96, "{}", std::mem::size_of::<Kept>());
        // A seven-digit id, a four-character Chinese name, an 11-digit telephone.
        let typical = User { name: "欧阳娜娜".into(), telephone: "+8613812345678".into(), ..user(1_234_567) };
        assert!(matches!(Data::new(&UserResponse::from(typical)), Data::Inline { .. }));
    }

    #[tokio::test]
    async fn a_copy_past_its_lifetime_is_read_again_from_the_database() {
        let (profiles, _dir) = profiles(10).await;
        let fields = RegistrationFields {
            name: Some("张三"),
            gender: Some("1"),
            age: Some("30"),
            telephone: Some("13812345678"),
            password: Some("correct horse"),
        };
        let id = profiles.users.insert(&NewUser::parse(fields).unwrap(), "hash").await.unwrap().unwrap().id;
        let stale = Kept { fresh_until: seconds_now(), data: Data::Shared(Bytes::from_static(b"{\"stale\":true}")) };
        profiles.cache.insert(id, stale);
        assert!(profiles.cached(id).is_none(), "a copy at the end of its lifetime is not served");
        let me = profiles.me_answer(id).await.unwrap().unwrap();
        assert!(!me.ends_with(b"{\"stale\":true}}"), "the database's profile, not the stale copy");
        assert_eq!(profiles.cached(id).map(|data| data.answer()), Some(me), "and kept again");
    }

    #[test]
    fn copies_read_together_lapse_apart_within_a_fifth_of_the_max_age() {
        let lifetimes: Vec<Duration> = (1..=1000).map(lifetime).collect();
        let (shortest, longest) = (lifetimes.iter().min().unwrap(), lifetimes.iter().max().unwrap());
        assert!(*shortest >= Profiles::MAX_AGE * 4 / 5 && *longest <= Profiles::MAX_AGE);
        // A thousand users read in the same second: no ten of them lapse
        // in the same second (a uniform spread over 60 s puts ~17 in each).
        let mut per_second = std::collections::HashMap::<u64, usize>::new();
        for lifetime in &lifetimes {
            *per_second.entry(lifetime.as_secs()).or_default() += 1;
        }
        assert!(per_second.len() >= 55, "the window is used: {} distinct seconds", per_second.len());
        assert!(per_second.values().all(|&n| n <= 40), "{per_second:?}");
        assert_eq!(lifetime(42), lifetime(42), "one user's copies live alike");
    }

    #[tokio::test]
    async fn the_cache_stays_within_its_capacity() {
        let (profiles, _dir) = profiles(3).await;
        for id in 0..10 {
            profiles.keep(user(id));
        }
        assert_eq!(profiles.cache.len(), 3);
        assert!(profiles.cached(9).is_some(), "the newest is kept");
    }
}
