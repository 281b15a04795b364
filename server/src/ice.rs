//! ICE servers for browsers: STUN URLs as configured, and TURN with short-lived
//! credentials in coturn's TURN REST API form (`use-auth-secret`):
//! username `"<unix expiry>:<session id>"`, credential
//! `base64(HMAC-SHA1(shared secret, username))`. The secret stays on the server; a
//! leaked credential works for one session id until it expires.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use protocol::{IceServer, SessionId};
use sha1::Sha1;
use std::fmt;
use std::time::Duration;

/// The TURN shared secret. Its `Debug` never shows the value, so it cannot reach logs.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnSecret(String);

impl std::str::FromStr for TurnSecret {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() < 16 {
            return Err("a TURN secret needs at least 16 characters".into());
        }
        Ok(Self(s.to_string()))
    }
}

impl fmt::Debug for TurnSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TurnSecret(..)")
    }
}

/// What the hub hands out: STUN in `welcome`; with TURN, fresh credentials in every
/// `matched` and before they expire.
#[derive(Clone, Debug, Default)]
pub struct IceConfig {
    pub stun_urls: Vec<String>,
    pub turn_urls: Vec<String>,
    pub secret: Option<TurnSecret>,
    /// How long a TURN credential stays valid.
    pub ttl: Duration,
}

impl IceConfig {
    /// Whether credentials expire, so they are refreshed with each match.
    pub fn has_turn(&self) -> bool {
        self.secret.is_some() && !self.turn_urls.is_empty()
    }

    /// The servers without credentials (STUN), for `welcome`.
    pub fn stun_servers(&self) -> Vec<IceServer> {
        if self.stun_urls.is_empty() {
            return Vec::new();
        }
        vec![IceServer { urls: self.stun_urls.clone(), username: None, credential: None }]
    }

    /// The ICE servers for `session`, with TURN credentials valid from `now_unix`
    /// (seconds) for `ttl`.
    pub fn servers_at(&self, session: SessionId, now_unix: u64) -> Vec<IceServer> {
        let mut servers = self.stun_servers();
        if let (Some(secret), false) = (&self.secret, self.turn_urls.is_empty()) {
            let username = turn_username(now_unix + self.ttl.as_secs(), &session.to_string());
            let credential = turn_credential(secret, &username);
            servers.push(IceServer {
                urls: self.turn_urls.clone(),
                username: Some(username),
                credential: Some(credential),
            });
        }
        servers
    }
}

/// `"<expiry>:<user>"`, the username coturn checks the expiry of.
pub fn turn_username(expiry_unix: u64, user: &str) -> String {
    format!("{expiry_unix}:{user}")
}

/// `base64(HMAC-SHA1(secret, username))`, the password coturn derives from its secret.
pub fn turn_credential(secret: &TurnSecret, username: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.0.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> TurnSecret {
        TurnSecret(s.into())
    }

    #[test]
    fn credentials_match_an_independent_hmac_sha1() {
        // Computed with Python's hmac/hashlib/base64:
        // base64.b64encode(hmac.new(b"north-secret-key", b"1700003600:alice", hashlib.sha1).digest())
        assert_eq!(turn_credential(&secret("north-secret-key"), "1700003600:alice"), "ZxgrZt5holLUm5x8R3HXZZGpmHg=");
    }

    #[test]
    fn turn_entries_carry_the_expiry_and_the_session() {
        let cfg = IceConfig {
            stun_urls: vec!["stun:stun.example.org:3478".into()],
            turn_urls: vec!["turn:127.0.0.1:3478?transport=udp".into()],
            secret: Some(secret("0123456789abcdef")),
            ttl: Duration::from_secs(3600),
        };
        let session: SessionId = "11111111-2222-4333-8444-555555555555".parse().unwrap();
        let servers = cfg.servers_at(session, 1_700_000_000);
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].username, None);
        let turn = &servers[1];
        assert_eq!(turn.username.as_deref(), Some("1700003600:11111111-2222-4333-8444-555555555555"));
        assert_eq!(
            turn.credential.as_deref(),
            Some(turn_credential(&secret("0123456789abcdef"), turn.username.as_deref().unwrap()).as_str())
        );
        // Later calls move the expiry forward.
        let later = cfg.servers_at(session, 1_700_000_100);
        assert_eq!(later[1].username.as_deref(), Some("1700003700:11111111-2222-4333-8444-555555555555"));
    }

    #[test]
    fn no_secret_no_turn_and_the_secret_never_prints() {
        let cfg = IceConfig { turn_urls: vec!["turn:x".into()], ..IceConfig::default() };
        assert!(cfg.servers_at(SessionId(uuid::Uuid::nil()), 0).is_empty());
        assert!(!cfg.has_turn());
        assert_eq!(format!("{:?}", secret("0123456789abcdef")), "TurnSecret(..)");
        assert!("short".parse::<TurnSecret>().is_err());
    }
}
