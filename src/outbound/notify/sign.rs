//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>): the three
//! headers a receiver checks, `webhook-id`, `webhook-timestamp` and
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::SigningKey;

/// The `v1,<base64>` signature of one message.
pub(crate) fn signature(key: &SigningKey, id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.expose()).expect("HMAC accepts any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The headers of one signed message; `timestamp` is Unix seconds at send time.
pub(crate) fn headers(
    key: &SigningKey,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> [(&'static str, String); 3] {
    [
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signature(key, id, timestamp, body)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_reference_libraries_vector() {
        // The test vector of the standard-webhooks reference libraries.
        let key = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let got = signature(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(got, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn headers_carry_id_timestamp_and_signature() {
        let key = SigningKey::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let [id, ts, sig] = headers(&key, "m1", 5, b"{}");
        assert_eq!(id, ("webhook-id", "m1".to_owned()));
        assert_eq!(ts, ("webhook-timestamp", "5".to_owned()));
        assert_eq!(sig.1, signature(&key, "m1", 5, b"{}"));
        assert_ne!(
            sig.1,
            signature(&key, "m1", 6, b"{}"),
            "the timestamp is signed"
        );
    }
}
