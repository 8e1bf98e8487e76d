//! Basic auth for `basic_auth_users`, cheap in steady state and no help to an attacker.
//!
//! - bcrypt is slow on purpose (tens of ms at cost 10), so it runs on blocking threads behind a
//!   small semaphore: anonymous clients guessing passwords queue there and never occupy the
//!   runtime threads that serve scrapes.
//! - A successful check is remembered (by a SHA-256 of user, hash and password, never the password
//!   itself), so a scraper sending the same credentials every 15 s costs no bcrypt at all.
//! - An unknown user is checked against a dummy hash of the same cost, so refusing them takes as
//!   long as refusing a known user with a wrong password: response times do not reveal user names.

use std::collections::{BTreeMap, HashSet};
use std::sync::RwLock;

use base64::Engine;
use tokio::sync::Semaphore;
use warp::http::HeaderValue;

/// At most this many bcrypt checks run at once.
const BCRYPT_PERMITS: usize = 2;
/// Remembered successes; past this the memory is cleared (a handful of users is the expected case).
const CACHE_LIMIT: usize = 1024;

/// The users of one config file.
pub struct Users {
    users: BTreeMap<String, String>,
    /// Checked for unknown users; same cost as the costliest real hash.
    dummy: String,
}

impl Users {
    /// Takes validated hashes; computes the dummy hash (one bcrypt run, so call it off the runtime).
    pub fn new(users: BTreeMap<String, String>) -> Users {
        let cost = users.values().filter_map(|h| h.parse::<bcrypt::HashParts>().ok()).map(|p| p.get_cost()).max();
        let cost = cost.unwrap_or(bcrypt::DEFAULT_COST).clamp(4, 31);
        let dummy = if users.is_empty() {
            String::new()
        } else {
            bcrypt::hash("not the password of any user", cost).unwrap_or_default()
        };
        Users { users, dummy }
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// What outlives a reload: the semaphore and the remembered successes.
pub struct Checker {
    permits: Semaphore,
    ok: RwLock<HashSet<[u8; 32]>>,
}

impl Default for Checker {
    fn default() -> Self {
        Checker { permits: Semaphore::new(BCRYPT_PERMITS), ok: RwLock::new(HashSet::new()) }
    }
}

/// `user:password` from an `Authorization: Basic …` header.
fn credentials(header: &HeaderValue) -> Option<(String, Vec<u8>)> {
    let text = header.to_str().ok()?.trim();
    let (scheme, encoded) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

fn fingerprint(user: &str, hash: &str, password: &[u8]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [user.as_bytes(), hash.as_bytes(), password] {
        ctx.update(&(part.len() as u64).to_le_bytes());
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

impl Checker {
    /// Whether the `Authorization` header names a user of `users` with their password.
    pub async fn check(&self, users: &Users, header: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = header.and_then(credentials) else { return false };
        let (hash, known) = match users.users.get(&user) {
            Some(h) => (h.clone(), true),
            None => (users.dummy.clone(), false),
        };
        let key = fingerprint(&user, &hash, &password);
        if known && self.ok.read().unwrap_or_else(|p| p.into_inner()).contains(&key) {
            return true;
        }
        let Ok(_permit) = self.permits.acquire().await else { return false };
        let matched = tokio::task::spawn_blocking(move || bcrypt::verify(&password, &hash).unwrap_or(false))
            .await
            .unwrap_or(false);
        if matched && known {
            let mut ok = self.ok.write().unwrap_or_else(|p| p.into_inner());
            if ok.len() >= CACHE_LIMIT {
                ok.clear();
            }
            ok.insert(key);
        }
        matched && known
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(s: &str) -> HeaderValue {
        HeaderValue::from_str(&format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(s))).unwrap()
    }

    #[test]
    fn credentials_parse() {
        assert_eq!(credentials(&basic("alice:pa:ss")), Some(("alice".into(), b"pa:ss".to_vec())));
        assert_eq!(credentials(&basic("alice")), None);
        assert_eq!(credentials(&HeaderValue::from_static("Bearer abc")), None);
    }

    #[tokio::test]
    async fn known_unknown_wrong_and_cached() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let users = Users::new(BTreeMap::from([("alice".to_string(), hash)]));
        let checker = Checker::default();
        assert!(!checker.check(&users, None).await);
        assert!(!checker.check(&users, Some(&basic("alice:wrong"))).await);
        assert!(!checker.check(&users, Some(&basic("bob:secret"))).await);
        assert!(checker.ok.read().unwrap().is_empty(), "failures are not remembered");
        assert!(checker.check(&users, Some(&basic("alice:secret"))).await);
        assert_eq!(checker.ok.read().unwrap().len(), 1);
        assert!(checker.check(&users, Some(&basic("alice:secret"))).await);
    }
}
