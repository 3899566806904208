//! Console sessions, in memory only (a restarted central asks operators to log in
//! again). A session is a 256-bit random id, kept only as its SHA-256, with its own
//! CSRF token; it ends after [`IDLE`] without a request or [`LIFETIME`] after login,
//! whichever comes first, and at logout.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A session unused this long ends.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after login, used or not.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// The most sessions held at once; a login beyond it ends the oldest.
pub const MAX_SESSIONS: usize = 1_000;

/// Why a session could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The system's random number generator failed.
    #[error("cannot make a session id: the system random number generator failed ({0}); check that getrandom(2) or /dev/urandom works")]
    Random(String),
}

/// 32 random bytes as hex.
pub fn random_hex() -> Result<String, SessionError> {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).map_err(|e| SessionError::Random(e.to_string()))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

#[derive(Debug)]
struct Entry {
    csrf: String,
    created: Instant,
    last: Instant,
}

/// A live session as a request sees it.
#[derive(Debug, Clone)]
pub struct Live {
    /// The session's CSRF token (sent back in `X-CSRF-Token` or a form's `csrf`).
    pub csrf: String,
}

/// The store.
#[derive(Debug)]
pub struct Sessions {
    inner: Mutex<HashMap<String, Entry>>,
    idle: Duration,
    lifetime: Duration,
}

fn key(id: &str) -> String {
    roost_federation::pki::sha256_hex(id.as_bytes())
}

impl Sessions {
    /// An empty store with these timeouts.
    pub fn new(idle: Duration, lifetime: Duration) -> Self {
        Self {
            inner: Mutex::new(HashMap::new()),
            idle,
            lifetime,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn expired(&self, e: &Entry, now: Instant) -> bool {
        now.duration_since(e.last) > self.idle || now.duration_since(e.created) > self.lifetime
    }

    /// A new session: (id for the cookie, CSRF token).
    pub fn create(&self) -> Result<(String, String), SessionError> {
        let id = random_hex()?;
        let csrf = random_hex()?;
        let now = Instant::now();
        let mut m = self.lock();
        m.retain(|_, e| !self.expired(e, now));
        while m.len() >= MAX_SESSIONS {
            let oldest = m
                .iter()
                .min_by_key(|(_, e)| e.created)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => drop(m.remove(&k)),
                None => break,
            }
        }
        m.insert(
            key(&id),
            Entry {
                csrf: csrf.clone(),
                created: now,
                last: now,
            },
        );
        Ok((id, csrf))
    }

    /// The live session of this id (its idle clock restarts), or `None`.
    pub fn check(&self, id: &str) -> Option<Live> {
        let now = Instant::now();
        let k = key(id);
        let mut m = self.lock();
        let expired = self.expired(m.get(&k)?, now);
        if expired {
            m.remove(&k);
            return None;
        }
        let e = m.get_mut(&k)?;
        e.last = now;
        Some(Live {
            csrf: e.csrf.clone(),
        })
    }

    /// End a session.
    pub fn remove(&self, id: &str) {
        self.lock().remove(&key(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_live_expire_and_end() {
        let s = Sessions::new(Duration::from_secs(60), Duration::from_secs(3600));
        let (id, csrf) = s.create().unwrap();
        assert_eq!(id.len(), 64);
        assert_ne!(id, csrf);
        assert_eq!(s.check(&id).unwrap().csrf, csrf);
        assert!(s.check("nope").is_none());
        s.remove(&id);
        assert!(s.check(&id).is_none());

        let short = Sessions::new(Duration::ZERO, Duration::from_secs(3600));
        let (id, _) = short.create().unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(short.check(&id).is_none(), "idle session still live");
    }

    #[test]
    fn the_store_is_bounded() {
        let s = Sessions::new(IDLE, LIFETIME);
        let (first, _) = s.create().unwrap();
        for _ in 0..MAX_SESSIONS {
            s.create().unwrap();
        }
        assert!(s.check(&first).is_none(), "the oldest session was kept");
        assert_eq!(s.lock().len(), MAX_SESSIONS);
    }
}
