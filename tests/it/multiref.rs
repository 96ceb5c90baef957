//! Issue 10 item 11: Bitbucket Cloud, Bitbucket Server/Data Center and Azure DevOps
//! send every ref a push changed in one delivery (`git push --follow-tags`: a branch
//! and its tag). Each change is judged on its own: every watched ref gets its build,
//! the rest are ignored with their reason, and the reply and the delivery history list
//! each ref's outcome, while the top-level `status`/`build` still name the first build.
//! The bodies are the multi-change fixtures (see tests/fixtures/webhooks/README.md)
//! with the test repository's commit put in.

use serde_json::{json, Value};

use crate::support::{fixture_headers, fixtures, GitRepo, TestDaemon};

/// A daemon and a repository with `main`, a `release/1.2` branch and a `v1.2` tag,
/// all at one commit (as `git push --follow-tags` leaves them).
struct Pushed {
    d: TestDaemon,
    repo: GitRepo,
    commit: String,
}

impl Pushed {
    fn new() -> Pushed {
        let d = TestDaemon::start();
        let repo = GitRepo::new(d.dir.path().join("origin"));
        let commit = repo.commit("release.txt", "1.2\n", "release 1.2");
        repo.git(&["tag", "v1.2"]);
        repo.git(&["branch", "release/1.2"]);
        Pushed { d, repo, commit }
    }

    /// A feed watching `patterns`; returns its hook path.
    fn feed(&self, name: &str, patterns: &[&str]) -> String {
        let url = self.repo.url();
        let mut args = vec![
            "--repo",
            url.as_str(),
            "--command",
            "true",
            "--cooldown",
            "0",
        ];
        for pattern in patterns {
            args.extend(["--branch", pattern]);
        }
        self.d.add_feed(name, &args)
    }

    /// Posts `body` with the headers of fixture `headers` (no secret on the feed).
    fn post(&self, hook: &str, headers: &str, body: &Value) -> (u16, Value) {
        let headers = fixture_headers(headers);
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let reply = self
            .d
            .post(hook, &headers, &serde_json::to_vec(body).unwrap());
        (reply.status, reply.json())
    }

    /// The refs the feed's builds were for, oldest first, once each has succeeded.
    fn built_refs(&self, feed: &str) -> Vec<String> {
        let builds = self.d.admin_json(&["builds", feed]);
        let mut ids: Vec<u64> = builds
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_u64().unwrap())
            .collect();
        ids.sort_unstable();
        ids.into_iter()
            .map(|id| {
                let build = self.d.wait_build(id, 60);
                assert_eq!(build["status"], "succeeded", "{build}");
                build["ref"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    /// `hookd admin deliveries`' newest entry's per-ref outcomes, as (ref, outcome).
    fn delivered(&self, feed: &str) -> Vec<(String, String)> {
        let deliveries = self.d.admin_json(&["deliveries", feed]);
        ref_list(&deliveries[0], "outcome")
    }
}

fn fixture(file: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixtures().join(file)).unwrap()).unwrap()
}

/// (ref, `key`) of each entry of `refs` in a reply or a delivery record.
fn ref_list(listing: &Value, key: &str) -> Vec<(String, String)> {
    listing["refs"]
        .as_array()
        .unwrap_or_else(|| panic!("no refs in {listing}"))
        .iter()
        .map(|r| {
            let field = |k: &str| r[k].as_str().unwrap().to_owned();
            (field("ref"), field(key))
        })
        .collect()
}

/// (ref, status) of each entry of a reply's `refs`.
fn ref_statuses(reply: &Value) -> Vec<(String, String)> {
    ref_list(reply, "status")
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

/// Bitbucket Cloud: a branch and its tag in `push.changes`, to a feed that watches
/// both: two builds, one per ref, admitted together; a redelivery (same
/// `X-Request-UUID`) gets the whole first reply again and queues nothing.
#[test]
fn bitbucket_cloud_branch_and_tag_each_build_once() {
    let p = Pushed::new();
    let hook = p.feed("bbc", &["main", "refs/tags/*"]);
    let mut body = fixture("bitbucket-cloud/repo-push-follow-tags.json");
    for change in body["push"]["changes"].as_array_mut().unwrap() {
        change["new"]["target"]["hash"] = json!(p.commit);
    }
    let headers = "bitbucket-cloud/repo-push.headers";
    let (status, reply) = p.post(&hook, headers, &body);
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["status"], "queued", "{reply}");
    assert_eq!(
        ref_statuses(&reply),
        pairs(&[("refs/heads/main", "queued"), ("refs/tags/v1.2", "queued")])
    );
    let first = reply["build"].as_u64().unwrap();
    assert_eq!(reply["refs"][0]["build"], first);
    assert_ne!(reply["refs"][1]["build"], first, "{reply}");
    assert_eq!(p.built_refs("bbc"), ["refs/heads/main", "refs/tags/v1.2"]);

    let (again_status, again) = p.post(&hook, headers, &body);
    assert_eq!((again_status, &again), (status, &reply));
    assert_eq!(p.built_refs("bbc").len(), 2, "a redelivery queues nothing");
    assert_eq!(
        p.delivered("bbc"),
        pairs(&[("refs/heads/main", "queued"), ("refs/tags/v1.2", "queued")])
    );
}

/// Bitbucket Server / Data Center: the branch update and the tag's ADD in `changes`,
/// to a feed that watches only tags: the branch is ignored with its reason, the tag
/// is built, and the top level names the tag's build.
#[test]
fn bitbucket_server_tag_after_a_branch_is_built() {
    let p = Pushed::new();
    let hook = p.feed("bbs", &["refs/tags/*"]);
    let mut body = fixture("bitbucket-server/refs-changed-follow-tags.json");
    for change in body["changes"].as_array_mut().unwrap() {
        change["toHash"] = json!(p.commit);
    }
    body["toCommit"]["id"] = json!(p.commit);
    let (status, reply) = p.post(&hook, "bitbucket-server/refs-changed.headers", &body);
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["status"], "queued", "{reply}");
    assert_eq!(
        ref_statuses(&reply),
        pairs(&[
            ("refs/heads/renovate-all", "ignored"),
            ("refs/tags/v1.2", "queued")
        ])
    );
    assert_eq!(
        reply["refs"][0]["reason"],
        "branch renovate-all is not watched"
    );
    assert_eq!(reply["build"], reply["refs"][1]["build"]);
    assert_eq!(p.built_refs("bbs"), ["refs/tags/v1.2"]);
    let deliveries = p.d.admin_json(&["deliveries", "bbs"]);
    assert_eq!(deliveries[0]["ref"], "refs/tags/v1.2", "{deliveries}");
    assert_eq!(deliveries[0]["outcome"], "queued");
    assert_eq!(
        p.delivered("bbs"),
        pairs(&[
            ("refs/heads/renovate-all", "ignored"),
            ("refs/tags/v1.2", "queued")
        ])
    );
    // The table wraps its notes: compare words.
    let listed = p.d.admin_ok(&["deliveries", "bbs"]);
    let listed = listed.split_whitespace().collect::<Vec<_>>().join(" ");
    let each = format!(
        "refs/heads/renovate-all ignored (branch renovate-all is not watched); refs/tags/v1.2 queued #{}",
        reply["build"]
    );
    assert!(listed.contains(&each), "{listed}");
}

/// Azure DevOps: `master` and a new `release/1.2` in `resource.refUpdates`, plus a
/// deleted branch, to a feed that watches `release/*` and `gone`: the second branch
/// is built, `master` and the deletion are ignored.
#[test]
fn azure_devops_second_branch_is_built_and_a_deletion_ignored() {
    let p = Pushed::new();
    let hook = p.feed("ado", &["release/*", "gone"]);
    let mut body = fixture("azure-devops/git-push-two-branches.json");
    let updates = body["resource"]["refUpdates"].as_array_mut().unwrap();
    for update in updates.iter_mut() {
        update["newObjectId"] = json!(p.commit);
    }
    updates.push(json!({"name": "refs/heads/gone", "oldObjectId": p.commit,
        "newObjectId": "0".repeat(40)}));
    let (status, reply) = p.post(&hook, "azure-devops/git-push.headers", &body);
    assert_eq!(status, 202, "{reply}");
    assert_eq!(
        ref_statuses(&reply),
        pairs(&[
            ("refs/heads/master", "ignored"),
            ("refs/heads/release/1.2", "queued"),
            ("refs/heads/gone", "ignored"),
        ])
    );
    assert_eq!(reply["refs"][2]["reason"], "branch gone was deleted");
    assert_eq!(p.built_refs("ado"), ["refs/heads/release/1.2"]);
}
