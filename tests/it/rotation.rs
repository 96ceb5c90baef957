//! Rotating a feed's webhook secret refuses no push on the way: while a rotation is
//! pending, deliveries signed with the old secret or the new one are accepted (also
//! after a restart); once confirmed only the new one; once cancelled only the old one.

use hmac::{Hmac, Mac};

use crate::support::{fixtures, paused_feed, TestDaemon};

/// A GitHub push of `main` signed with `secret` (no signature for `None`), each with
/// its own delivery id so none is answered as a redelivery.
fn push(d: &TestDaemon, hook: &str, secret: Option<&str>, delivery: &str) -> u16 {
    let body = std::fs::read(fixtures().join("github/push.json")).unwrap();
    let mut headers = vec![
        ("X-GitHub-Event", "push".to_owned()),
        ("X-GitHub-Delivery", delivery.to_owned()),
        ("Content-Type", "application/json".to_owned()),
    ];
    if let Some(secret) = secret {
        headers.push(("X-Hub-Signature-256", github_signature(secret, &body)));
    }
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let reply = d.post(hook, &headers, &body);
    assert!(
        matches!(reply.status, 202 | 401),
        "{}: {}",
        reply.status,
        reply.body
    );
    reply.status
}

/// `sha256=` hex HMAC-SHA256 of `body`, as GitHub signs.
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn secret_file(d: &TestDaemon, name: &str, text: &str) -> String {
    let path = d.dir.path().join(name);
    std::fs::write(&path, format!("{text}\n")).unwrap();
    path.display().to_string()
}

#[test]
fn both_secrets_are_accepted_until_the_rotation_is_confirmed() {
    let mut d = TestDaemon::start();
    let hook = paused_feed(&d, "rot");
    let old = secret_file(&d, "old.secret", "old-secret");
    let new = secret_file(&d, "new.secret", "new-secret");
    d.admin_ok(&["feed", "edit", "rot", "--secret-file", &old]);
    assert_eq!(push(&d, &hook, Some("new-secret"), "d1"), 401);

    let feed = d.admin_json(&["secret", "rotate", "rot", "--secret-file", &new]);
    assert_eq!(feed["secret_pending"], true);
    let shown = d.admin_ok(&["feed", "show", "rot"]);
    assert!(
        shown.contains("secret:      set, rotation pending"),
        "{shown}"
    );
    assert_eq!(push(&d, &hook, Some("old-secret"), "d2"), 202);
    assert_eq!(push(&d, &hook, Some("new-secret"), "d3"), 202);
    assert_eq!(push(&d, &hook, Some("neither"), "d4"), 401);
    assert_eq!(push(&d, &hook, None, "d5"), 401);

    // The pending secret is durable: a restart accepts both still.
    d.restart();
    assert_eq!(push(&d, &hook, Some("old-secret"), "d6"), 202);
    assert_eq!(push(&d, &hook, Some("new-secret"), "d7"), 202);

    let feed = d.admin_json(&["secret", "confirm", "rot"]);
    assert_eq!(
        (&feed["secret_pending"], &feed["has_secret"]),
        (&false.into(), &true.into())
    );
    assert_eq!(push(&d, &hook, Some("old-secret"), "d8"), 401);
    assert_eq!(push(&d, &hook, Some("new-secret"), "d9"), 202);
    let deliveries = d.admin_json(&["deliveries", "rot", "--limit", "1"]);
    assert_eq!(deliveries[0]["delivery_id"], "d9");
    assert_eq!(deliveries[0]["outcome"], "coalesced");

    // Nothing pending: confirm and cancel say so and change nothing.
    let (code, err) = d.admin_err(&["secret", "confirm", "rot"]);
    assert_eq!(code, 1);
    assert!(err.contains("no secret rotation pending"), "{err}");
    assert_eq!(push(&d, &hook, Some("new-secret"), "d10"), 202);
}

#[test]
fn a_cancelled_rotation_keeps_the_old_secret_and_a_first_secret_waits_too() {
    let d = TestDaemon::start();
    let hook = paused_feed(&d, "first");
    let next = secret_file(&d, "next.secret", "next-secret");
    // A feed without a secret keeps taking unsigned pushes while its first one is
    // pending; confirming makes signing required.
    d.admin_ok(&["secret", "rotate", "first", "--secret-file", &next]);
    assert_eq!(push(&d, &hook, None, "u1"), 202);
    assert_eq!(push(&d, &hook, Some("next-secret"), "u2"), 202);
    d.admin_ok(&["secret", "confirm", "first"]);
    assert_eq!(push(&d, &hook, None, "u3"), 401);
    assert_eq!(push(&d, &hook, Some("next-secret"), "u4"), 202);

    let other = secret_file(&d, "other.secret", "other-secret");
    d.admin_ok(&["secret", "rotate", "first", "--secret-file", &other]);
    assert_eq!(push(&d, &hook, Some("other-secret"), "u5"), 202);
    let feed = d.admin_json(&["secret", "cancel", "first"]);
    assert_eq!(feed["secret_pending"], false);
    assert_eq!(push(&d, &hook, Some("other-secret"), "u6"), 401);
    assert_eq!(push(&d, &hook, Some("next-secret"), "u7"), 202);
    let pending_file = d.data_dir().join("secrets/first+pending");
    assert!(!pending_file.exists(), "the cancelled secret is deleted");

    // Setting the secret by hand ends a pending rotation.
    d.admin_ok(&["secret", "rotate", "first", "--secret-file", &other]);
    assert!(pending_file.exists());
    d.admin_ok(&["feed", "edit", "first", "--secret-file", &next]);
    assert!(!pending_file.exists());
    assert_eq!(push(&d, &hook, Some("other-secret"), "u8"), 401);
    assert_eq!(push(&d, &hook, Some("next-secret"), "u9"), 202);
}
