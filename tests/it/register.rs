//! `hookd admin hook register|status|unregister` against a local forge per forge that
//! accepts exactly the documented webhook calls and then delivers to the registered
//! URL with the registered secret, as the forge would.

use std::path::PathBuf;

use crate::support::forge::{ForgeKind, ForgeServer};
use crate::support::TestDaemon;

/// The API token the forges expect.
const TOKEN: &str = "tok-9f2e61c04b7d3a85";

/// A daemon whose feed `web` (paused, so nothing builds) has `[feeds.web.status]`
/// pointing at `forge`.
fn daemon_for(forge: &ForgeServer) -> TestDaemon {
    let mut d = TestDaemon::start();
    let token = token_file(&d);
    d.set_config(&forge.status_table("web", &token));
    d.restart();
    d.add_unbuilt_feed("web", &["--cooldown", "0", "--branch", "**"]);
    d.admin_ok(&["feed", "pause", "web"]);
    d
}

fn token_file(d: &TestDaemon) -> PathBuf {
    let path = d.dir.path().join("forge.token");
    std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
    path
}

/// The hook path of a registered URL.
fn path_of(url: &str) -> String {
    crate::support::hook_path(url)
}

#[test]
fn github_register_is_idempotent_rotates_without_a_gap_and_unregisters() {
    let forge = ForgeServer::start(ForgeKind::Github, TOKEN);
    let d = daemon_for(&forge);

    // The default public_url is this machine's loopback: GitHub could not reach it.
    let (code, err) = d.admin_err(&["hook", "register", "web"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("is a loopback address") && err.contains("--allow-private"),
        "{err}"
    );
    assert!(forge.received().is_empty(), "nothing asked of the forge");

    let said = d.admin_ok(&["hook", "register", "web", "--allow-private"]);
    assert!(said.contains(" created on github octo/web"), "{said}");
    assert!(
        said.contains("GitHub's ping was answered: HTTP 200"),
        "{said}"
    );
    let hooks = forge.webhooks();
    assert_eq!(hooks.len(), 1, "{hooks:#?}");
    let hook = hooks[0].clone();
    assert_eq!(hook.events, ["push"]);
    let ping = &forge.wait_deliveries(1, 30)[0];
    assert_eq!((ping.event.as_str(), ping.status), ("ping", 200));
    assert!(ping.body.contains("pong"), "{}", ping.body);
    let tokens = d.admin_json(&["token", "list", "web"]);
    let labels: Vec<_> = tokens
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["label"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        labels,
        ["default", "github"],
        "a token minted for the forge"
    );
    assert_eq!(tokens[1]["url"], hook.url.as_str());
    let (status, body) = forge.deliver_push(hook.id, None);
    assert_eq!(status, 202, "{body}");

    // Again: the same webhook, updated with a new secret; a push already on its way
    // with the old secret while the forge switches is still accepted.
    forge.push_during_next_update();
    let said = d.admin_ok(&["hook", "register", "web", "--allow-private"]);
    assert!(
        said.contains(&format!("webhook {} updated", hook.id)),
        "{said}"
    );
    let hooks = forge.webhooks();
    assert_eq!(hooks.len(), 1, "{hooks:#?}");
    let rotated = hooks[0].clone();
    assert_eq!((rotated.id, &rotated.url), (hook.id, &hook.url));
    assert_ne!(rotated.secret, hook.secret, "a new secret");
    let old_pushes: Vec<_> = forge
        .deliveries()
        .into_iter()
        .filter(|x| x.event == "push" && x.secret == hook.secret)
        .collect();
    assert_eq!(old_pushes.len(), 2, "{old_pushes:#?}");
    assert_eq!(old_pushes[1].status, 202, "{}", old_pushes[1].body);
    // Confirmed: only the new secret now.
    assert_eq!(forge.deliver_push(hook.id, Some(&hook.secret)).0, 401);
    assert_eq!(forge.deliver_push(hook.id, None).0, 202);

    let status = d.admin_json(&["hook", "status", "web"]);
    assert_eq!(status["forge"], "github");
    assert_eq!(status["webhooks"][0]["id"], hook.id.to_string());
    assert_eq!(status["webhooks"][0]["active"], true);
    assert_eq!(
        status["webhooks"][0]["last_response"],
        "HTTP 202, active, OK"
    );
    assert_eq!(status["deliveries"][0]["http_status"], 202);
    let text = d.admin_ok(&["hook", "status", "web"]);
    assert!(text.contains("last reply:  HTTP 202, active, OK"), "{text}");

    let said = d.admin_ok(&["hook", "unregister", "web"]);
    assert!(
        said.contains(&format!("webhook {} deleted", hook.id)),
        "{said}"
    );
    assert!(forge.webhooks().is_empty());
    let gone = d.post(&path_of(&hook.url), &[], b"");
    assert_eq!(gone.status, 404, "its token is revoked");
    assert!(forge.rejected().is_empty(), "{:#?}", forge.rejected());
}

#[test]
fn a_token_without_the_webhook_scope_changes_nothing_on_either_side() {
    for kind in [
        ForgeKind::Github,
        ForgeKind::Gitea,
        ForgeKind::Gitlab,
        ForgeKind::BitbucketCloud,
        ForgeKind::BitbucketServer,
        ForgeKind::AzureDevops,
    ] {
        let forge = ForgeServer::start(kind, TOKEN);
        forge.limit_token(TOKEN);
        let d = daemon_for(&forge);
        let before = d.admin_json(&["token", "list", "web"]);
        let (code, err) = d.admin_err(&["hook", "register", "web", "--allow-private"]);
        assert_eq!(code, 1, "{kind:?}");
        let scope = match kind {
            ForgeKind::Github => "admin:repo_hook",
            ForgeKind::Gitlab => "api scope",
            ForgeKind::BitbucketCloud => "webhook scope",
            ForgeKind::BitbucketServer => "repository admin",
            ForgeKind::AzureDevops => "Service Hooks (Read & write)",
            _ => "write:repository",
        };
        let code = if kind == ForgeKind::AzureDevops {
            401
        } else {
            403
        };
        assert!(
            err.contains(&format!("HTTP {code}")) && err.contains(scope),
            "{kind:?}: {err}"
        );
        assert!(forge.webhooks().is_empty());
        assert_eq!(d.admin_json(&["token", "list", "web"]), before);
        let feed = d.admin_json(&["feed", "show", "web"]);
        assert_eq!(
            (&feed["has_secret"], &feed["secret_pending"]),
            (&false.into(), &false.into()),
            "{kind:?}"
        );
        assert!(!d.logs().contains(TOKEN), "the API token is never logged");
    }
}

#[test]
fn a_second_register_or_unregister_for_a_feed_is_refused_while_one_runs() {
    let forge = ForgeServer::start(ForgeKind::Github, TOKEN);
    let d = daemon_for(&forge);
    forge.hold(true);
    std::thread::scope(|scope| {
        let first = scope.spawn(|| d.admin(&["hook", "register", "web", "--allow-private"]));
        // The first register has asked the forge for its webhooks and hangs there.
        forge.wait_until(30, "the first register's list of webhooks", |r| {
            !r.is_empty()
        });
        for command in [
            &["hook", "register", "web", "--allow-private"][..],
            &["hook", "unregister", "web"][..],
        ] {
            let (code, err) = d.admin_err(command);
            assert_eq!(code, 1, "{command:?}");
            assert!(
                err.contains("another hook register or unregister for feed web is still running"),
                "{command:?}: {err}"
            );
        }
        assert_eq!(forge.received().len(), 1, "{:#?}", forge.received());
        // The forge lets go (closing the held connection): the first ends, whatever
        // it answered, and frees the feed.
        forge.hold(false);
        let _ = first.join();
    });
    let said = d.admin_ok(&["hook", "register", "web", "--allow-private"]);
    assert!(said.contains(" created on github octo/web"), "{said}");
    assert_eq!(forge.webhooks().len(), 1, "{:#?}", forge.webhooks());
}

#[test]
fn a_refused_create_takes_back_the_token_and_the_secret_it_made() {
    let forge = ForgeServer::start(ForgeKind::Github, TOKEN);
    forge.read_only_token(TOKEN);
    let d = daemon_for(&forge);
    let secret = d.dir.path().join("web.secret");
    std::fs::write(&secret, "current").unwrap();
    d.admin_ok(&[
        "feed",
        "edit",
        "web",
        "--secret-file",
        secret.to_str().unwrap(),
    ]);
    let before = d.admin_json(&["token", "list", "web"]);
    let (code, err) = d.admin_err(&["hook", "register", "web", "--allow-private"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot create the webhook (github answered HTTP 403"),
        "{err}"
    );
    assert!(forge.webhooks().is_empty());
    assert_eq!(d.admin_json(&["token", "list", "web"]), before);
    let feed = d.admin_json(&["feed", "show", "web"]);
    assert_eq!(feed["secret_pending"], false);
    assert!(!d.data_dir().join("secrets/web+pending").exists());
    assert_eq!(
        std::fs::read_to_string(d.data_dir().join("secrets/web")).unwrap(),
        "current"
    );
}

#[test]
fn every_other_forge_registers_delivers_and_unregisters() {
    for kind in [
        ForgeKind::Gitea,
        ForgeKind::Forgejo,
        ForgeKind::Gitlab,
        ForgeKind::BitbucketCloud,
        ForgeKind::BitbucketServer,
        ForgeKind::AzureDevops,
    ] {
        let forge = ForgeServer::start(kind, TOKEN);
        let d = daemon_for(&forge);
        let said = d.admin_ok(&["hook", "register", "web", "--allow-private"]);
        assert!(said.contains(" created on "), "{kind:?}: {said}");
        let hook = forge.webhooks()[0].clone();
        let push = match kind {
            ForgeKind::BitbucketCloud => "repo:push",
            ForgeKind::BitbucketServer => "repo:refs_changed",
            ForgeKind::AzureDevops => "git.push",
            _ => "push",
        };
        assert_eq!(hook.events, [push], "{kind:?}");
        let (status, body) = forge.deliver_push(hook.id, None);
        assert_eq!(status, 202, "{kind:?}: {body}");

        // Again, asking for tag pushes: one webhook, a new secret, the old one refused.
        let said = d.admin_ok(&[
            "hook",
            "register",
            "web",
            "--allow-private",
            "--events",
            "push,tag",
        ]);
        assert!(said.contains(" updated on "), "{kind:?}: {said}");
        let hooks = forge.webhooks();
        assert_eq!(hooks.len(), 1, "{kind:?}: {hooks:#?}");
        assert_ne!(hooks[0].secret, hook.secret);
        let events = match kind {
            ForgeKind::Gitlab => vec!["push", "tag_push"],
            _ => vec![push],
        };
        assert_eq!(hooks[0].events, events, "{kind:?}");
        assert_eq!(forge.deliver_push(hook.id, Some(&hook.secret)).0, 401);
        assert_eq!(forge.deliver_push(hook.id, None).0, 202);

        let status = d.admin_json(&["hook", "status", "web"]);
        assert_eq!(status["webhooks"].as_array().unwrap().len(), 1, "{status}");
        assert_eq!(status["webhooks"][0]["url"], hook.url.as_str());
        d.admin_ok(&["hook", "unregister", "web"]);
        assert!(forge.webhooks().is_empty(), "{kind:?}");
        assert_eq!(d.post(&path_of(&hook.url), &[], b"").status, 404);
        assert!(forge.rejected().is_empty(), "{:#?}", forge.rejected());
    }
}
