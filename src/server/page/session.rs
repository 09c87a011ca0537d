//! Who may act from the status page: sign-in with the control token gives a
//! session (an HttpOnly, SameSite=Strict cookie with a lifetime) and a CSRF
//! token that every action form carries. Wrong tokens are refused without
//! detail, and each failure makes the next sign-in wait longer, so guessing is
//! slow. Sessions live in memory: a restart signs everyone out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const COOKIE: &str = "cronbyte_session";

/// How long a session lasts after sign-in.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3_600);

/// The most sessions kept; the oldest go first beyond it, so a flood of
/// sign-ins cannot grow memory without bound.
const MAX_SESSIONS: usize = 1_000;

/// The wait after the first failed sign-in; it doubles with each failure in a
/// row, up to [`MAX_DELAY`], and a success starts it over.
const FIRST_DELAY: Duration = Duration::from_millis(250);
const MAX_DELAY: Duration = Duration::from_secs(8);

/// A signed-in session.
#[derive(Clone, Debug)]
pub struct Session {
    /// The token every action form must carry.
    pub csrf: String,
    pub(super) expires: Instant,
}

/// The sessions of this process and the sign-in throttle.
#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, Session>>,
    /// Failed sign-ins in a row, for the delay.
    failures: Mutex<u32>,
    /// Held while a sign-in is judged (and waits), so that attempts sent in
    /// parallel wait one after another rather than together.
    judging: tokio::sync::Mutex<()>,
}

/// 32 random bytes as hex.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn equal(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

impl Sessions {
    /// Judges a sign-in: with the right token, a new session's id; otherwise
    /// none, after a wait that grows with each failure in a row.
    pub async fn sign_in(&self, expected: &SecretString, presented: &str) -> Option<String> {
        let _one_at_a_time = self.judging.lock().await;
        let failures = *self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures > 0 {
            let delay = FIRST_DELAY
                .saturating_mul(1u32 << (failures - 1).min(16))
                .min(MAX_DELAY);
            tokio::time::sleep(delay).await;
        }
        if !equal(presented, expected.expose_secret()) {
            let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            *failures = failures.saturating_add(1);
            return None;
        }
        *self.failures.lock().unwrap_or_else(|p| p.into_inner()) = 0;
        let id = random_token();
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        live.retain(|_, s| s.expires > now);
        if live.len() >= MAX_SESSIONS
            && let Some(oldest) = live
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        {
            live.remove(&oldest);
        }
        live.insert(
            id.clone(),
            Session {
                csrf: random_token(),
                expires: now + LIFETIME,
            },
        );
        Some(id)
    }

    /// The session of a cookie value, unless it expired.
    pub fn session(&self, id: &str) -> Option<Session> {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        // Looked up by equality of the whole id; ids are random, so the map's
        // lookup time says nothing useful about a guess.
        live.get(id).filter(|s| s.expires > Instant::now()).cloned()
    }

    /// Whether `csrf` is the session's token.
    pub fn csrf_matches(session: &Session, csrf: &str) -> bool {
        equal(csrf, &session.csrf)
    }

    pub fn sign_out(&self, id: &str) {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

/// The `Set-Cookie` value of a new session.
pub fn cookie(id: &str) -> String {
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        LIFETIME.as_secs()
    )
}

/// The `Set-Cookie` value that ends a session in the browser.
pub fn expired_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The session id the request's `Cookie` headers carry, if any.
pub fn cookie_value(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> SecretString {
        SecretString::from("the-control-token")
    }

    #[tokio::test(start_paused = true)]
    async fn a_wrong_token_gets_no_session_and_each_failure_in_a_row_waits_longer() {
        let sessions = Sessions::default();
        let mut waits = Vec::new();
        for _ in 0..4 {
            let started = tokio::time::Instant::now();
            assert!(sessions.sign_in(&token(), "guess").await.is_none());
            waits.push(started.elapsed());
        }
        assert_eq!(
            waits,
            [0, 250, 500, 1_000].map(Duration::from_millis),
            "the first try is not slowed, each failure after is"
        );
        // The right token still gets in (after the wait), and starts the count over.
        let id = sessions
            .sign_in(&token(), "the-control-token")
            .await
            .expect("a session");
        let started = tokio::time::Instant::now();
        assert!(sessions.sign_in(&token(), "guess").await.is_none());
        assert_eq!(started.elapsed(), Duration::ZERO);
        let session = sessions.session(&id).expect("the session is live");
        assert!(Sessions::csrf_matches(&session, &session.csrf.clone()));
        assert!(!Sessions::csrf_matches(&session, "forged"));
        assert_ne!(session.csrf, id, "the CSRF token is not the session id");
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_ends_at_sign_out_or_after_its_lifetime() {
        let sessions = Sessions::default();
        let id = sessions
            .sign_in(&token(), "the-control-token")
            .await
            .unwrap();
        assert!(sessions.session(&id).is_some());
        sessions.sign_out(&id);
        assert!(sessions.session(&id).is_none());
        let id = sessions
            .sign_in(&token(), "the-control-token")
            .await
            .unwrap();
        tokio::time::advance(LIFETIME + Duration::from_secs(1)).await;
        assert!(sessions.session(&id).is_none());
    }

    #[test]
    fn the_cookie_is_http_only_same_site_strict_with_a_lifetime_and_read_back() {
        let set = cookie("abc");
        assert!(set.contains("HttpOnly"));
        assert!(set.contains("SameSite=Strict"));
        assert!(set.contains("Max-Age=43200"));
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            axum::http::header::COOKIE,
            "other=1; cronbyte_session=abc; x=y".parse().unwrap(),
        );
        assert_eq!(cookie_value(&headers).as_deref(), Some("abc"));
    }
}
