//! Every recorded forge delivery, posted byte for byte with its headers to the real
//! daemon: the reply the fixture README says, redelivery, signatures, history.

use crate::support::{fixture_headers, fixtures, TestDaemon};

const WATCHED: &[&str] = &[
    "main",
    "master",
    "develop",
    "renovate-all",
    "fdsafdsa",
    "refs/tags/*",
];

struct Case {
    id: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    expect: String,
    secret: Option<String>,
    commit: Option<String>,
}

fn cases() -> Vec<Case> {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("manifest.json")).unwrap())
            .unwrap();
    manifest["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let headers = fixture_headers(c["headers_file"].as_str().unwrap());
            let commit = c
                .get("checkout_sha")
                .or(c.get("after"))
                .and_then(|v| v.as_str())
                .map(str::to_owned);
            Case {
                id: format!(
                    "{}/{}",
                    c["provider"].as_str().unwrap(),
                    c["case"].as_str().unwrap()
                ),
                headers,
                body: std::fs::read(fixtures().join(c["body_file"].as_str().unwrap())).unwrap(),
                expect: c["expect"].as_str().unwrap().to_owned(),
                secret: c["secret"].as_str().map(str::to_owned),
                commit,
            }
        })
        .collect()
}

fn feed_args(d: &TestDaemon, secret: Option<&str>, name: &str) -> Vec<String> {
    let mut args: Vec<String> = [
        "--repo",
        "https://forge.invalid/x.git",
        "--command",
        "true",
        "--cooldown",
        "0",
    ]
    .map(String::from)
    .to_vec();
    for b in WATCHED {
        args.extend(["--branch".into(), (*b).into()]);
    }
    if let Some(secret) = secret {
        let path = d.dir.path().join(format!("{name}.secret"));
        std::fs::write(&path, secret).unwrap();
        args.extend(["--secret-file".into(), path.display().to_string()]);
    }
    args
}

fn add_feed(d: &TestDaemon, name: &str, secret: Option<&str>) -> String {
    let args = feed_args(d, secret, name);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let hook = d.add_feed(name, &refs);
    // Paused: triggers are admitted and recorded, but nothing fetches from the forge.
    d.admin_ok(&["feed", "pause", name]);
    hook
}

fn post(d: &TestDaemon, hook: &str, case: &Case, body: &[u8]) -> crate::support::HttpReply {
    let headers: Vec<(&str, &str)> = case
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    d.post(hook, &headers, body)
}

#[test]
fn every_fixture_gets_the_documented_reply() {
    let d = TestDaemon::start();
    for (i, case) in cases().iter().enumerate() {
        let name = format!("case{i}");
        let hook = add_feed(&d, &name, case.secret.as_deref());
        let reply = post(&d, &hook, case, &case.body);
        let word = reply.json()["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        match case.expect.split_whitespace().next().unwrap() {
            "build" => assert_eq!(
                (reply.status, word.as_str()),
                (202, "queued"),
                "{}: {}",
                case.id,
                reply.body
            ),
            "ignore" => assert_eq!(
                (reply.status, word.as_str()),
                (200, "ignored"),
                "{}: {}",
                case.id,
                reply.body
            ),
            "acknowledge" => assert_eq!(
                (reply.status, word.as_str()),
                (200, "pong"),
                "{}: {}",
                case.id,
                reply.body
            ),
            other => panic!("unknown expectation {other}"),
        }
        let deliveries = d.admin_json(&["deliveries", &name]);
        assert_eq!(deliveries[0]["outcome"], word.as_str(), "{}", case.id);
        assert_eq!(deliveries[0]["http_status"], reply.status, "{}", case.id);
        if word == "queued" {
            assert_eq!(
                deliveries[0]["commit"].as_str(),
                case.commit.as_deref(),
                "{}: the commit to build",
                case.id
            );
            // Redelivery: same reply, no new build.
            if deliveries[0]["delivery_id"].is_string() {
                let again = post(&d, &hook, case, &case.body);
                assert_eq!(
                    (again.status, &again.body),
                    (reply.status, &reply.body),
                    "{}",
                    case.id
                );
                assert_eq!(
                    d.admin_json(&["builds", &name]).as_array().unwrap().len(),
                    1,
                    "{}",
                    case.id
                );
            }
        }
    }
}

#[test]
fn signed_fixtures_are_refused_when_tampered_with_or_unsigned() {
    let d = TestDaemon::start();
    for (i, case) in cases()
        .iter()
        .enumerate()
        .filter(|(_, c)| c.secret.is_some() && c.expect.starts_with("build"))
    {
        let name = format!("sig{i}");
        let hook = add_feed(&d, &name, case.secret.as_deref());
        let mut tampered = case.body.clone();
        let at = tampered.len() / 2;
        tampered[at] ^= 0x01;
        let reply = post(&d, &hook, case, &tampered);
        // GitLab's token does not cover the body: tampering is not detectable there.
        if !case.id.starts_with("gitlab") {
            assert_eq!(reply.status, 401, "{}: {}", case.id, reply.body);
            assert_eq!(reply.json()["status"], "unauthorized");
        }
        let wrong = add_feed(&d, &format!("wrong{i}"), Some("not the secret"));
        let reply = post(&d, &wrong, case, &case.body);
        assert_eq!(
            reply.status, 401,
            "{} with a wrong secret: {}",
            case.id, reply.body
        );
        assert!(
            !reply.body.contains("not the secret"),
            "the secret leaked into the reply"
        );
    }
    // Bitbucket Server sends its test delivery unsigned: still a pong, never a build.
    let ping = cases()
        .into_iter()
        .find(|c| c.id == "bitbucket-server/ping")
        .unwrap();
    let hook = add_feed(&d, "bbs", Some("s3cret"));
    let r = post(&d, &hook, &ping, &ping.body);
    assert_eq!(
        (r.status, r.json()["status"].as_str()),
        (200, Some("pong")),
        "{}",
        r.body
    );
    // A feed with a secret never takes an unsigned push.
    let hook = add_feed(&d, "locked", Some("s3cret"));
    let r = d.post(&hook, &[], b"");
    assert_eq!(r.status, 401, "{}", r.body);
    let deliveries = d.admin_json(&["deliveries", "locked"]);
    assert_eq!(deliveries[0]["outcome"], "unauthorized");
    assert!(d
        .admin_json(&["builds", "locked"])
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn documented_github_vector_is_accepted() {
    let d = TestDaemon::start();
    let hook = add_feed(&d, "vector", Some("It's a Secret to Everybody"));
    let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    // Not a push, but the signature must pass: the reply is about the payload, not auth.
    let r = d.post(
        &hook,
        &[
            ("X-GitHub-Event", "ping"),
            ("X-Hub-Signature-256", sig),
            ("Content-Type", "application/json"),
        ],
        b"Hello, World!",
    );
    assert_ne!(r.status, 401, "{}", r.body);
    let bad = d.post(
        &hook,
        &[
            ("X-GitHub-Event", "ping"),
            ("X-Hub-Signature-256", &sig.replace("757", "758")),
            ("Content-Type", "application/json"),
        ],
        b"Hello, World!",
    );
    assert_eq!(bad.status, 401);
}

#[test]
fn malformed_bodies_are_400_with_a_reason_and_never_500() {
    let d = TestDaemon::start();
    let hook = add_feed(&d, "junk", None);
    type Headers<'a> = &'a [(&'a str, &'a str)];
    let cases: &[(Headers, &[u8])] = &[
        (
            &[
                ("X-GitHub-Event", "push"),
                ("Content-Type", "application/json"),
            ],
            b"{not json",
        ),
        (
            &[
                ("X-GitHub-Event", "push"),
                ("Content-Type", "application/json"),
            ],
            b"{}",
        ),
        (&[("X-Gitlab-Event", "Push Hook")], b"[1,2]"),
        (&[("X-Event-Key", "repo:push")], b"\xff\xfe"),
        (&[("X-Gitea-Event", "push")], b"{\"ref\": 5}"),
        (
            &[
                ("X-GitHub-Event", "push"),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            b"nopayload=1",
        ),
    ];
    for (headers, body) in cases {
        let r = d.post(&hook, headers, body);
        assert_eq!(r.status, 400, "{headers:?}: {}", r.body);
        assert!(
            r.json()["reason"].as_str().is_some_and(|s| !s.is_empty()),
            "{}",
            r.body
        );
    }
}

#[test]
fn random_and_truncated_bodies_never_get_a_5xx() {
    let d = TestDaemon::start();
    let hook = add_feed(&d, "fuzz", None);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for case in cases() {
        for _ in 0..8 {
            let mut body = case.body.clone();
            body.truncate((next() as usize) % (body.len() + 1));
            for _ in 0..(next() % 4) {
                if !body.is_empty() {
                    let at = (next() as usize) % body.len();
                    body[at] = next() as u8;
                }
            }
            let r = post(&d, &hook, &case, &body);
            assert!(r.status < 500, "{}: {} {}", case.id, r.status, r.body);
        }
    }
    assert_eq!(
        crate::support::http(d.addr, "GET", "/healthz", &[], b"").status,
        200
    );
}

#[test]
fn the_token_never_reaches_the_log() {
    let d = TestDaemon::start();
    let hook = add_feed(&d, "quiet", None);
    d.post(&hook, &[("X-GitHub-Event", "push")], b"{}");
    d.post(&hook, &[], b"");
    let token = hook.trim_start_matches("/hooks/");
    let logs = d.logs();
    assert!(logs.contains("delivery"), "deliveries are logged: {logs}");
    assert!(!logs.contains(token), "token in the log");
}
