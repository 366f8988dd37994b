//! Signed messages: with `signatureSecret` set, every message this instance
//! publishes, queues or streams carries Node's UMF HMAC (`signature`, spec
//! §4.6, byte-compatible with `UMFMessage.signMessage`), and every message it
//! receives must carry a valid one. Node Hydra signs only when asked and never
//! verifies; a shared secret is what lets a service trust `from` on a Redis
//! that other clients can publish to.
//!
//! What is refused is counted (`MessageStats::signature_rejected`) and never
//! reaches a handler, a waiting `request` or a queue consumer; queued items go
//! to `mqincomplete` (kept, not lost). Migration mode
//! (`acceptUnsignedMessages`) lets unsigned messages in, counted, while every
//! sender is switched over; a wrong signature is refused in both modes.
//!
//! Settings in the `hydra` branch: `signatureSecret` (a string; or the
//! `HYDRA_SIGNATURE_SECRET` variable, so the secret need not sit in a file),
//! `signatureAlgorithm` (`sha256`, Node's default, or `sha512`),
//! `acceptUnsignedMessages` (`false`).

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::umf::Umf;

/// Node's default HMAC algorithm.
pub const DEFAULT_SIGNATURE_ALGORITHM: &str = "sha256";

/// The algorithms `Umf::sign` implements.
const ALGORITHMS: [&str; 2] = ["sha256", "sha512"];

/// The signing policy of one instance.
#[derive(Clone)]
pub(crate) struct Signing {
    secret: Vec<u8>,
    algorithm: &'static str,
    accept_unsigned: bool,
}

/// What to do with an incoming message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Its signature is valid.
    Valid,
    /// Unsigned, let in by migration mode.
    UnsignedAccepted,
    /// Refused, for this reason.
    Rejected(&'static str),
}

impl Signing {
    /// The policy from the `hydra` branch, or `None` without a secret.
    pub(crate) fn from_settings(hydra: &Map<String, Value>) -> Result<Option<Signing>> {
        let secret = match hydra.get("signatureSecret") {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(secret)) if secret.is_empty() => return Ok(None),
            Some(Value::String(secret)) => secret.as_bytes().to_vec(),
            Some(_) => return Err(Error::invalid_config("signatureSecret", "must be a string")),
        };
        let algorithm = match hydra.get("signatureAlgorithm") {
            None | Some(Value::Null) => DEFAULT_SIGNATURE_ALGORITHM,
            Some(Value::String(name)) => ALGORITHMS
                .into_iter()
                .find(|known| known.eq_ignore_ascii_case(name.trim()))
                .ok_or_else(|| {
                    Error::invalid_config("signatureAlgorithm", format!("{name:?} is not one of sha256, sha512"))
                })?,
            Some(_) => return Err(Error::invalid_config("signatureAlgorithm", "must be a string")),
        };
        let accept_unsigned = match hydra.get("acceptUnsignedMessages") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(accept)) => *accept,
            Some(Value::String(text)) if text == "true" || text == "false" => text == "true",
            Some(_) => return Err(Error::invalid_config("acceptUnsignedMessages", "must be true or false")),
        };
        Ok(Some(Signing {
            secret,
            algorithm,
            accept_unsigned,
        }))
    }

    /// `umf` with its signature set (the caller's message is left as it was).
    pub(crate) fn signed(&self, umf: &Umf) -> Result<Umf> {
        let mut signed = umf.clone();
        signed.sign(self.algorithm, &self.secret)?;
        Ok(signed)
    }

    /// Whether an incoming message may be let in.
    pub(crate) fn check(&self, umf: &Umf) -> Verdict {
        if umf.signature.as_deref().is_none_or(str::is_empty) {
            return if self.accept_unsigned {
                Verdict::UnsignedAccepted
            } else {
                Verdict::Rejected("unsigned")
            };
        }
        match umf.verify(self.algorithm, &self.secret) {
            Ok(true) => Verdict::Valid,
            Ok(false) | Err(_) => Verdict::Rejected("wrong signature"),
        }
    }
}

/// What goes on the wire for `umf`: its short form, signed when a policy is set.
pub(crate) fn wire_form(signing: Option<&Signing>, umf: &Umf) -> Result<String> {
    match signing {
        Some(signing) => Ok(signing.signed(umf)?.to_short_json()),
        None => Ok(umf.to_short_json()),
    }
}

impl std::fmt::Debug for Signing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signing")
            .field("secret", &"***")
            .field("algorithm", &self.algorithm)
            .field("accept_unsigned", &self.accept_unsigned)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(settings: Value) -> Result<Option<Signing>> {
        Signing::from_settings(settings.as_object().expect("an object"))
    }

    #[test]
    fn no_secret_no_policy() {
        assert!(policy(json!({})).unwrap().is_none());
        assert!(policy(json!({"signatureSecret": ""})).unwrap().is_none());
    }

    #[test]
    fn bad_settings_name_their_field() {
        let field = |settings: Value| match policy(settings) {
            Err(Error::InvalidConfig { field, .. }) => field,
            other => panic!("expected an invalid config, got {other:?}"),
        };
        assert_eq!(field(json!({"signatureSecret": 42})), "signatureSecret");
        assert_eq!(
            field(json!({"signatureSecret": "s", "signatureAlgorithm": "md5"})),
            "signatureAlgorithm"
        );
        assert_eq!(
            field(json!({"signatureSecret": "s", "acceptUnsignedMessages": "yes"})),
            "acceptUnsignedMessages"
        );
    }

    #[test]
    fn signed_messages_pass_and_the_rest_are_refused() {
        let strict = policy(json!({"signatureSecret": "s3cret"})).unwrap().unwrap();
        let message = Umf::new("svc:/", "client:/", json!({"n": 1}));
        let signed = strict.signed(&message).unwrap();
        assert!(message.signature.is_none(), "the caller's message is not changed");
        assert_eq!(strict.check(&signed), Verdict::Valid);
        assert_eq!(strict.check(&message), Verdict::Rejected("unsigned"));
        let mut tampered = signed.clone();
        tampered.body = json!({"n": 2});
        assert_eq!(strict.check(&tampered), Verdict::Rejected("wrong signature"));
        let other = policy(json!({"signatureSecret": "other"})).unwrap().unwrap();
        assert_eq!(other.check(&signed), Verdict::Rejected("wrong signature"));

        let migrating = policy(json!({"signatureSecret": "s3cret", "acceptUnsignedMessages": true}))
            .unwrap()
            .unwrap();
        assert_eq!(migrating.check(&message), Verdict::UnsignedAccepted);
        assert_eq!(migrating.check(&tampered), Verdict::Rejected("wrong signature"));
    }

    #[test]
    fn sha512_is_node_compatible_too() {
        let policy = policy(json!({"signatureSecret": "k", "signatureAlgorithm": "SHA512"}))
            .unwrap()
            .unwrap();
        let signed = policy.signed(&Umf::new("a:/", "b:/", json!({}))).unwrap();
        assert_eq!(signed.signature.as_ref().map(String::len), Some(128));
        assert_eq!(policy.check(&signed), Verdict::Valid);
    }

    #[test]
    fn the_secret_is_not_printed() {
        let policy = policy(json!({"signatureSecret": "s3cret"})).unwrap().unwrap();
        assert!(!format!("{policy:?}").contains("s3cret"));
    }
}
