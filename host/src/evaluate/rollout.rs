//! Feature-flag rollout membership: "is user X in the rollout?", answered the
//! same way every time, on every replica, in every language.
//!
//! A user's bucket is the first 8 bytes of `SHA-256(flag ":" user)` read as a
//! big-endian integer, modulo 10,000: a number from 0 to 9,999. A rollout of
//! `p` percent admits buckets below `p × 100`, so raising the percentage only
//! ever adds users, and the same user always lands in the same bucket of a
//! flag while different flags spread users independently.

use sha2::{Digest as _, Sha256};

/// Buckets per flag: rollouts have a granularity of 0.01%.
pub const BUCKETS: u64 = 10_000;

/// The user's bucket for `flag`, from 0 to 9,999.
pub fn bucket(flag: &str, user: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(flag.as_bytes());
    h.update(b":");
    h.update(user.as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) % BUCKETS
}

/// A flag's exposure: a percentage, optionally restricted to segments.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    pub flag: String,
    /// 0 to 100; fractions allowed down to 0.01.
    pub percent: f64,
    /// When non-empty, only users in one of these segments are eligible.
    pub segments: Vec<String>,
}

impl Rollout {
    /// Whether `user`, who belongs to `user_segments`, sees the flag.
    pub fn includes(&self, user: &str, user_segments: &[String]) -> bool {
        if !self.segments.is_empty() && !user_segments.iter().any(|s| self.segments.contains(s)) {
            return false;
        }
        let admitted = (self.percent.clamp(0.0, 100.0) * 100.0).round() as u64;
        bucket(&self.flag, user) < admitted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference buckets computed independently with Python's hashlib:
    /// `int.from_bytes(hashlib.sha256(f"{flag}:{user}".encode()).digest()[:8], "big") % 10000`.
    const VECTORS: &[(&str, &str, u64)] = include!("../../tests/bucket_vectors.in");

    #[test]
    fn buckets_match_the_reference_vectors() {
        for (flag, user, expected) in VECTORS {
            assert_eq!(bucket(flag, user), *expected, "{flag}:{user}");
        }
    }

    #[test]
    fn the_same_user_always_lands_in_the_same_bucket_and_growth_only_adds() {
        let r = |p| Rollout {
            flag: "newUserDashboard".into(),
            percent: p,
            segments: vec![],
        };
        let users: Vec<String> = (0..2000).map(|i| format!("user-{i}")).collect();
        let at = |p: f64| {
            users
                .iter()
                .filter(|u| r(p).includes(u, &[]))
                .cloned()
                .collect::<Vec<_>>()
        };
        let (five, fifty) = (at(5.0), at(50.0));
        assert!(five.iter().all(|u| fifty.contains(u)));
        // Roughly the requested share (binomial, n = 2000).
        assert!((800..1200).contains(&fifty.len()), "{}", fifty.len());
        assert!(at(0.0).is_empty());
        assert_eq!(at(100.0).len(), users.len());
    }

    #[test]
    fn segments_restrict_eligibility() {
        let r = Rollout {
            flag: "f".into(),
            percent: 100.0,
            segments: vec!["beta_users".into()],
        };
        assert!(r.includes("alice", &["beta_users".into()]));
        assert!(!r.includes("alice", &["free".into()]));
        assert!(!r.includes("alice", &[]));
    }
}
