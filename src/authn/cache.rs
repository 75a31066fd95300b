//! The result cache (README's "What is checked, in order", step 2): a verdict is reused for the
//! same token and `spec.audiences`, a positive one at most `cache.ttlSeconds` and never past the
//! token's `exp`, a rejection `cache.negativeTtlSeconds`, a transient failure never. Entries hold
//! the answer already serialised, so a hit sends bytes made when the entry was.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use moka::future::Cache;

use crate::config::CacheSettings;
use crate::fingerprint::Fingerprint;
use crate::review::{ReadyAnswer, UserInfo};
use crate::verdict::{Outcome, Reason, Reviewed, Verdict};

/// The cache of one authenticator (a reload starts an empty one).
pub(super) struct ResultCache {
    entries: Cache<[u8; 32], CachedVerdict>,
    clock: CacheClock,
    ttl: Duration,
    negative_ttl: Duration,
}

impl ResultCache {
    /// `None` when `cache.maxEntries` is 0: the cache is off.
    pub(super) fn new(c: &CacheSettings) -> Option<Self> {
        let (ttl, negative_ttl) = (Duration::from_secs(c.ttl_seconds), Duration::from_secs(c.negative_ttl_seconds));
        let entries = (c.max_entries > 0).then(|| {
            Cache::builder()
                .max_capacity(c.max_entries)
                .weigher(entry_weight)
                .time_to_live(ttl.max(negative_ttl).min(MAX_CACHE_LIFETIME))
                .build()
        })?;
        Some(ResultCache { entries, clock: CacheClock(Instant::now()), ttl, negative_ttl })
    }

    /// The entry for `key`, unless there is none or it is past its deadline.
    pub(super) async fn get(&self, key: &[u8; 32]) -> Option<Reviewed> {
        let hit = self.entries.get(key).await?;
        if let Some(reviewed) = hit.reviewed(self.clock.now()) {
            return Some(reviewed);
        }
        // Past its deadline (moka keeps every entry for the longest lifetime any may have): a
        // miss, and gone.
        self.entries.invalidate(key).await;
        None
    }

    /// Keeps a fresh verdict when it is one the cache keeps, and hands it out with its answer
    /// ready to send (`answer: None` when it is not kept).
    pub(super) async fn insert(
        &self,
        key: [u8; 32],
        fingerprint: Fingerprint,
        verdict: Verdict,
        expires_at: Option<SystemTime>,
    ) -> Reviewed {
        let uncached = |verdict| Reviewed { verdict, answer: None, fingerprint };
        // Read before the wall clock that `ttl` counts from, so the deadline errs early.
        let made = self.clock.elapsed();
        let Some(ttl) = cache_ttl(&verdict.outcome, expires_at, SystemTime::now(), self.ttl, self.negative_ttl) else {
            return uncached(verdict);
        };
        let outcome = match &verdict.outcome {
            Outcome::Authenticated(_) => CachedOutcome::Authenticated,
            Outcome::Rejected(reason) => CachedOutcome::Rejected(*reason),
            Outcome::Unavailable(_) => return uncached(verdict),
        };
        let answer = ReadyAnswer::new(&verdict.outcome.status());
        let entry = CachedVerdict {
            answer: answer.clone(),
            issuer: verdict.issuer.clone(),
            outcome,
            fingerprint,
            deadline: CacheClock::deadline(made, ttl),
        };
        self.entries.insert(key, entry).await;
        Reviewed { verdict, answer: Some(answer), fingerprint }
    }
}

/// A cache entry. NB: it lives inside moka's own entry and a hit clones it, so it holds no
/// allocation but the answer (and the issuer's shared name): the user is kept once, in the
/// answer's bytes, and the log line's username is read back from there.
#[derive(Clone)]
struct CachedVerdict {
    answer: ReadyAnswer,
    issuer: Option<Arc<str>>,
    outcome: CachedOutcome,
    fingerprint: Fingerprint,
    /// Served only while [`CacheClock::now`] is below this.
    deadline: u64,
}

/// The outcomes the cache keeps: transient failures are never cached.
#[derive(Debug, Clone, Copy)]
enum CachedOutcome {
    Authenticated,
    Rejected(Reason),
}

impl CachedVerdict {
    /// The reviewed answer, unless the entry is past its deadline (or, which cannot happen, its
    /// username does not read back): then it must not be served.
    fn reviewed(self, now: u64) -> Option<Reviewed> {
        if now >= self.deadline {
            return None;
        }
        let outcome = match self.outcome {
            CachedOutcome::Authenticated => {
                let username = self.answer.username()?;
                Outcome::Authenticated(Arc::new(UserInfo { username, ..UserInfo::default() }))
            }
            CachedOutcome::Rejected(reason) => Outcome::Rejected(reason),
        };
        let verdict = Verdict { outcome, issuer: self.issuer, cached: true };
        Some(Reviewed { verdict, answer: Some(self.answer), fingerprint: self.fingerprint })
    }
}

/// The entries' clock: whole milliseconds since the cache was made, on the monotonic clock.
///
/// NB: each entry carries its own deadline and [`ResultCache::get`] checks it on every
/// hit, instead of moka's per-entry expiry, which keeps a timer-wheel node per entry (memory,
/// issue 8). moka's own `time_to_live` is only the longest lifetime any entry can have, so stale
/// entries still leave without being asked for.
struct CacheClock(Instant);

impl CacheClock {
    /// Now, in milliseconds.
    fn now(&self) -> u64 {
        whole_millis(self.0.elapsed())
    }

    /// Now, exactly.
    fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }

    /// The deadline of an entry made at `made` (from [`CacheClock::elapsed`]) that may live
    /// `ttl`. Both ends round down, so an entry is never served late: `now() < deadline` means
    /// floor(t) < floor(made + ttl), hence t < floor(t) + 1 <= made + ttl.
    fn deadline(made: Duration, ttl: Duration) -> u64 {
        whole_millis(made.saturating_add(ttl))
    }
}

fn whole_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// moka refuses a `time_to_live` over 1000 years; no entry needs one over a year.
const MAX_CACHE_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

/// Bytes of answer that count as one entry of `cache.maxEntries`. A typical answer is under
/// this; one with hundreds of groups counts as many entries, so the capacity
/// bounds memory whatever the tokens look like, not just the number of entries.
const ENTRY_WEIGHT_BYTES: usize = 640;

fn entry_weight(_key: &[u8; 32], entry: &CachedVerdict) -> u32 {
    let bytes = entry.answer.len();
    u32::try_from(bytes / ENTRY_WEIGHT_BYTES).unwrap_or(u32::MAX).max(1)
}

/// How long a verdict may be reused: a positive one until the token's `exp` at most, a definite
/// rejection briefly, a transient failure never.
fn cache_ttl(
    outcome: &Outcome,
    expires_at: Option<SystemTime>,
    now: SystemTime,
    ttl: Duration,
    negative_ttl: Duration,
) -> Option<Duration> {
    let ttl = match outcome {
        Outcome::Authenticated(_) => expires_at?.duration_since(now).ok()?.min(ttl),
        Outcome::Rejected(_) => negative_ttl,
        Outcome::Unavailable(_) => return None,
    };
    (!ttl.is_zero()).then_some(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Unavailable;

    #[test]
    fn a_large_answer_weighs_as_many_entries_as_it_is_long() {
        let entry = |groups: usize| {
            let user = UserInfo {
                username: "dev@example.com".into(),
                groups: (0..groups).map(|i| format!("oidc:engineering-team-{i:04}")).collect(),
                ..UserInfo::default()
            };
            let answer = ReadyAnswer::new(&Outcome::Authenticated(Arc::new(user)).status());
            let (outcome, fingerprint) = (CachedOutcome::Authenticated, Fingerprint::of("t"));
            CachedVerdict { answer, issuer: None, outcome, fingerprint, deadline: 1 }
        };
        assert_eq!(entry_weight(&[0; 32], &entry(2)), 1);
        let big = entry(200);
        assert!(entry_weight(&[0; 32], &big) as usize >= big.answer.len() / ENTRY_WEIGHT_BYTES);
        assert!(entry_weight(&[0; 32], &big) > 5, "{} bytes", big.answer.len());
    }

    #[test]
    fn a_cache_entry_stays_within_48_bytes_besides_its_answer() {
        // moka keeps the value inline in its own entry block; every 16 bytes more here is 1.5 MiB
        // at the default capacity (issue 8: 128 MiB with 100k cached reviews).
        assert!(std::mem::size_of::<CachedVerdict>() <= 48, "{}", std::mem::size_of::<CachedVerdict>());
    }

    #[test]
    fn positive_answers_are_never_cached_past_the_tokens_exp() {
        let now = SystemTime::now();
        let user = Outcome::Authenticated(Arc::new(UserInfo::default()));
        let (ttl, neg) = (Duration::from_secs(300), Duration::from_secs(10));
        let exp_in = |s| Some(now + Duration::from_secs(s));
        assert_eq!(cache_ttl(&user, exp_in(60), now, ttl, neg), Some(Duration::from_secs(60)));
        assert_eq!(cache_ttl(&user, exp_in(3600), now, ttl, neg), Some(ttl));
        assert_eq!(cache_ttl(&user, Some(now - Duration::from_secs(5)), now, ttl, neg), None);
        assert_eq!(cache_ttl(&user, None, now, ttl, neg), None);
    }

    #[test]
    fn rejections_are_cached_briefly_and_transient_failures_never() {
        let now = SystemTime::now();
        let (ttl, neg) = (Duration::from_secs(300), Duration::from_secs(10));
        assert_eq!(cache_ttl(&Outcome::Rejected(Reason::Expired), None, now, ttl, neg), Some(neg));
        assert_eq!(cache_ttl(&Outcome::Rejected(Reason::Expired), None, now, ttl, Duration::ZERO), None);
        assert_eq!(cache_ttl(&Outcome::Unavailable(Unavailable::IssuerKeys), None, now, ttl, neg), None);
    }

    #[test]
    fn an_entry_is_never_served_at_or_past_its_deadline() {
        let micros = Duration::from_micros;
        for made in (0..3000).step_by(7).map(micros) {
            for ttl in [0, 1, 999, 1000, 1001, 2500].map(micros) {
                let deadline = CacheClock::deadline(made, ttl);
                for t in (made.as_micros() as u64..made.as_micros() as u64 + 4000).map(micros) {
                    if whole_millis(t) < deadline {
                        assert!(t < made + ttl, "served at {t:?}, made {made:?} for {ttl:?}");
                    }
                }
            }
        }
        assert_eq!(whole_millis(Duration::MAX), u64::MAX);
    }
}
