//! Issue 17: an annotated tag pushed from each forge, in that forge's delivery shape
//! (the recorded fixtures, with the ids of the test's own repository put in), to a
//! feed watching `refs/tags/*`, against a real repository that holds the tag. The
//! delivery history, `build show` and `HOOKD_COMMIT` name the tagged commit, and the
//! build log has no "not found" note; a payload that carries only the tag object is
//! peeled, and the log says so. Then issue 10 item 13: a feed that watches only tags
//! never builds a branch it was not asked for.

use serde_json::{json, Value};

use crate::support::{fixture_headers, fixtures, wait_for, GitRepo, TestDaemon};

const TAG: &str = "v1.2";
const TAG_REF: &str = "refs/tags/v1.2";

/// A daemon and a repository whose `v1.2` is an annotated tag.
struct Forge {
    d: TestDaemon,
    repo: GitRepo,
    /// The commit the tag names.
    commit: String,
    /// The tag object itself.
    tag_object: String,
}

impl Forge {
    fn new() -> Forge {
        let d = TestDaemon::start();
        let repo = GitRepo::new(d.dir.path().join("origin"));
        let commit = repo.commit("release.txt", "1.2\n", "release 1.2");
        repo.git(&["tag", "-a", "-m", "version 1.2", TAG]);
        let tag_object = repo.git(&["rev-parse", TAG]);
        assert_ne!(tag_object, commit, "v1.2 must be an annotated tag");
        Forge {
            d,
            repo,
            commit,
            tag_object,
        }
    }

    /// A GitHub-like body (`ref`, `after`) from fixture `file`, naming the tag object
    /// as `after` and `value` as `field` (where such forges put the commit).
    fn after_and(&self, file: &str, field: &str, value: Value) -> Value {
        let mut b = fixture(file);
        b["ref"] = json!(TAG_REF);
        b["after"] = json!(self.tag_object);
        b[field] = value;
        b
    }

    /// A feed watching only tags whose command records `HOOKD_COMMIT`; returns its
    /// hook path.
    fn feed(&self, name: &str) -> String {
        let evidence = self.d.dir.path().join(format!("{name}.commit"));
        let command = format!("echo \"$HOOKD_COMMIT\" > '{}'", evidence.display());
        let url = self.repo.url();
        self.d.add_feed(
            name,
            &[
                "--repo",
                &url,
                "--branch",
                "refs/tags/*",
                "--command",
                &command,
                "--cooldown",
                "0",
            ],
        )
    }

    /// Delivers `body` with the headers of fixture `headers` (the feed has no
    /// secret, so signatures are not checked) to a new feed `name`, waits for the
    /// build, and reports what each view of it says.
    fn deliver(&self, name: &str, headers: &str, body: &Value) -> Seen {
        let hook = self.feed(name);
        let headers = fixture_headers(headers);
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let body = serde_json::to_vec(body).unwrap();
        let reply = self.d.post(&hook, &headers, &body);
        assert_eq!(reply.status, 202, "{name}: {}", reply.body);
        self.seen(name, reply.json()["build"].as_u64().expect("build id"))
    }

    fn seen(&self, name: &str, id: u64) -> Seen {
        let build = self.d.wait_build(id, 60);
        let log = self.d.log(id);
        assert_eq!(build["status"], "succeeded", "{name}: {build}\n{log}");
        let evidence = self.d.dir.path().join(format!("{name}.commit"));
        let built = wait_for(30, "the build's evidence", || {
            std::fs::read_to_string(&evidence).ok()
        });
        std::fs::remove_file(&evidence).unwrap();
        let deliveries = self.d.admin_json(&["deliveries", name]);
        Seen {
            delivered: deliveries[0]["commit"].as_str().map(str::to_owned),
            requested: build["requested"].as_str().map(str::to_owned),
            built: built.trim().to_owned(),
            log,
        }
    }

    /// The payload named the commit: every view says it, the log has no note.
    fn assert_commit_everywhere(&self, seen: &Seen) {
        assert_eq!(seen.delivered.as_deref(), Some(self.commit.as_str()));
        assert_eq!(seen.requested.as_deref(), Some(self.commit.as_str()));
        assert_eq!(seen.built, self.commit);
        assert!(!seen.log.contains("not found"), "{}", seen.log);
        assert!(!seen.log.contains("peeled"), "{}", seen.log);
    }

    /// The payload named only the tag object: it is what was requested, the commit
    /// is what ran, and the log says one was peeled to the other.
    fn assert_peeled(&self, seen: &Seen) {
        assert_eq!(seen.delivered.as_deref(), Some(self.tag_object.as_str()));
        assert_eq!(seen.requested.as_deref(), Some(self.tag_object.as_str()));
        assert_eq!(seen.built, self.commit);
        let note = format!(
            "tag object {} peeled to commit {}",
            self.tag_object, self.commit
        );
        assert!(seen.log.contains(&note), "{}", seen.log);
        assert!(!seen.log.contains("not found"), "{}", seen.log);
    }
}

/// What hookd shows and does for one delivered tag push.
struct Seen {
    /// `hookd admin deliveries`: the commit recorded for the delivery.
    delivered: Option<String>,
    /// `hookd admin build show`: the commit the trigger asked for.
    requested: Option<String>,
    /// `HOOKD_COMMIT` as the build command saw it.
    built: String,
    /// The build log.
    log: String,
}

/// A recorded fixture body as JSON, to have the test repository's ids put in.
fn fixture(file: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixtures().join(file)).unwrap()).unwrap()
}

/// GitHub (and GHES): `after` is the tag object, `head_commit.id` the commit
/// (github/push-tag.json, a captured tag push). Deliveries from before October 2021
/// often had `head_commit: null`.
#[test]
fn github_annotated_tag() {
    let f = Forge::new();
    let body = |head: Value| f.after_and("github/push-tag.json", "head_commit", head);
    let mut head = fixture("github/push-tag.json")["head_commit"].clone();
    head["id"] = json!(f.commit);
    let seen = f.deliver("gh", "github/push-tag.headers", &body(head));
    f.assert_commit_everywhere(&seen);
    let seen = f.deliver("gh-old", "github/push-tag.headers", &body(Value::Null));
    f.assert_peeled(&seen);
}

/// GitLab: `after` is the tag object, `checkout_sha` the commit (gitlab/tag-push.json,
/// a captured annotated-tag push); a body without `checkout_sha` keeps `after`.
#[test]
fn gitlab_annotated_tag() {
    let f = Forge::new();
    let body = |checkout: Value| f.after_and("gitlab/tag-push.json", "checkout_sha", checkout);
    let seen = f.deliver("gl", "gitlab/tag-push.headers", &body(json!(f.commit)));
    f.assert_commit_everywhere(&seen);
    let seen = f.deliver("gl-bare", "gitlab/tag-push.headers", &body(Value::Null));
    f.assert_peeled(&seen);
}

/// Bitbucket Cloud: a tag change's `new.target` is the commit whatever the tag's
/// kind (bitbucket-cloud/repo-push.json, a captured push, with its change made a
/// tag); there is no payload with only the tag object.
#[test]
fn bitbucket_cloud_annotated_tag() {
    let f = Forge::new();
    let mut b = fixture("bitbucket-cloud/repo-push.json");
    let new = &mut b["push"]["changes"][0]["new"];
    new["type"] = json!("tag");
    new["name"] = json!(TAG);
    new["target"]["hash"] = json!(f.commit);
    let seen = f.deliver("bbc", "bitbucket-cloud/repo-push.headers", &b);
    f.assert_commit_everywhere(&seen);
}

/// Bitbucket Server / Data Center: `toHash` is the tag object; Data Center 8+ adds
/// `toCommit` (bitbucket-server/refs-changed.json, captured from one, its change made
/// a tag), older servers do not (bitbucket-server/refs-changed-tag.json, a tag push
/// captured from Bitbucket Server in 2018). Issue 10 item 12.
#[test]
fn bitbucket_server_annotated_tag() {
    let f = Forge::new();
    let body = |file: &str| {
        let mut b = fixture(file);
        let change = &mut b["changes"][0];
        change["ref"] = json!({"id": TAG_REF, "displayId": TAG, "type": "TAG"});
        change["refId"] = json!(TAG_REF);
        change["fromHash"] = json!("0".repeat(40));
        change["toHash"] = json!(f.tag_object);
        change["type"] = json!("ADD");
        b
    };
    let mut current = body("bitbucket-server/refs-changed.json");
    current["toCommit"]["id"] = json!(f.commit);
    let seen = f.deliver("bbs", "bitbucket-server/refs-changed.headers", &current);
    f.assert_commit_everywhere(&seen);
    let old = body("bitbucket-server/refs-changed-tag.json");
    assert!(
        old.get("toCommit").is_none(),
        "a 2018 server sends no toCommit"
    );
    let seen = f.deliver("bbs-old", "bitbucket-server/refs-changed-tag.headers", &old);
    f.assert_peeled(&seen);
}

/// Gitea and Forgejo: `after` is the tag object and `head_commit` the commit
/// (gitea/push-new-branch.json, captured from Codeberg, as a tag); Gogs sends no
/// `head_commit` (gogs/push.json).
#[test]
fn gitea_and_gogs_annotated_tag() {
    let f = Forge::new();
    let body = |file: &str, head: Option<&str>| {
        let mut b = fixture(file);
        b["ref"] = json!(TAG_REF);
        b["before"] = json!("0".repeat(40));
        b["after"] = json!(f.tag_object);
        b["commits"] = json!([]);
        match head {
            Some(id) => b["head_commit"]["id"] = json!(id),
            None => assert!(b.get("head_commit").is_none(), "gogs sends no head_commit"),
        }
        b
    };
    let gitea = body("gitea/push-new-branch.json", Some(&f.commit));
    let seen = f.deliver("gitea", "gitea/push-new-branch.headers", &gitea);
    f.assert_commit_everywhere(&seen);
    let gogs = body("gogs/push.json", None);
    let seen = f.deliver("gogs", "gogs/push.headers", &gogs);
    f.assert_peeled(&seen);
}

/// Azure DevOps: `refUpdates[].newObjectId` is the tag object and the payload has
/// no peeled id (azure-devops/git-push.json, Microsoft's sample, as a tag).
#[test]
fn azure_devops_annotated_tag() {
    let f = Forge::new();
    let mut b = fixture("azure-devops/git-push.json");
    let update = &mut b["resource"]["refUpdates"][0];
    update["name"] = json!(TAG_REF);
    update["oldObjectId"] = json!("0".repeat(40));
    update["newObjectId"] = json!(f.tag_object);
    let seen = f.deliver("ado", "azure-devops/git-push.headers", &b);
    f.assert_peeled(&seen);
}

/// A generic trigger names no commit: the fetch peels the tag, nothing is noted.
#[test]
fn generic_trigger_of_an_annotated_tag() {
    let f = Forge::new();
    let hook = f.feed("plain");
    let reply = f.d.post(&format!("{hook}?branch={TAG_REF}"), &[], b"");
    assert_eq!(reply.status, 202, "{}", reply.body);
    let seen = f.seen("plain", reply.json()["build"].as_u64().unwrap());
    assert_eq!(seen.delivered, None);
    assert_eq!(seen.requested, None);
    assert_eq!(seen.built, f.commit);
    assert!(!seen.log.contains("not found") && !seen.log.contains("peeled"));
}

/// Issue 10 item 13: a plain `curl -X POST` to a feed that watches only tags used to
/// build refs/heads/main. Now it is a 400 that says how to name the ref, a named
/// unwatched ref is ignored as for any push, and a named watched tag builds.
#[test]
fn a_generic_trigger_on_a_tags_only_feed_must_name_a_watched_ref() {
    let f = Forge::new();
    let hook = f.feed("tags");
    let reply = f.d.post(&hook, &[], b"");
    assert_eq!(reply.status, 400, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["status"], "bad_request");
    let reason = body["reason"].as_str().unwrap();
    assert!(reason.contains("refs/tags/*"), "{reason}");
    assert!(reason.contains("?ref=refs/tags/v1.2"), "{reason}");
    assert_eq!(
        f.d.admin_json(&["deliveries", "tags"])[0]["outcome"],
        "bad_request"
    );

    let reply = f.d.post(&format!("{hook}?ref=refs/heads/main"), &[], b"");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["reason"], "branch main is not watched");
    let reply = f.d.post(&format!("{hook}?ref=v1.2"), &[], b"");
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(f
        .d
        .admin_json(&["builds", "tags"])
        .as_array()
        .unwrap()
        .is_empty());

    let reply = f.d.post(&format!("{hook}?ref={TAG_REF}"), &[], b"");
    assert_eq!(reply.status, 202, "{}", reply.body);
    let seen = f.seen("tags", reply.json()["build"].as_u64().unwrap());
    assert_eq!(seen.built, f.commit);
    assert_eq!(f.d.build(1)["ref"], TAG_REF);
}

/// Issue 10 item 13, by hand: `hookd admin trigger` on a tags-only feed needs `--ref`
/// (or `--branch`) naming a watched ref; `--any-ref` builds an unwatched one on purpose.
#[test]
fn a_manual_trigger_on_a_tags_only_feed_must_name_a_watched_ref() {
    let f = Forge::new();
    f.feed("tags");
    let (code, err) = f.d.admin_err(&["trigger", "tags"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--ref refs/tags/NAME"), "{err}");
    let (code, err) = f.d.admin_err(&["trigger", "tags", "--branch", "main"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("does not watch refs/heads/main"), "{err}");
    assert!(err.contains("--any-ref"), "{err}");
    let (code, _) = f.d.admin_err(&["trigger", "tags", "--any-ref"]);
    assert_eq!(code, 2, "--any-ref without a ref is a usage error");
    assert!(f
        .d
        .admin_json(&["builds", "tags"])
        .as_array()
        .unwrap()
        .is_empty());

    let triggered = f.d.admin_json(&["trigger", "tags", "--ref", TAG_REF]);
    let seen = f.seen("tags", triggered["build"].as_u64().unwrap());
    assert_eq!(seen.built, f.commit);

    let main = f.repo.head();
    let args = [
        "trigger",
        "tags",
        "--branch",
        "main",
        "--any-ref",
        "--force",
    ];
    let id = f.d.admin_json(&args)["build"].as_u64().unwrap();
    let seen = f.seen("tags", id);
    assert_eq!(seen.built, main);
    assert_eq!(f.d.build(id)["ref"], "refs/heads/main");
}
