//! Declared feeds applied: what a config file's `[feeds.NAME]` tables would change in
//! the stored feeds (the plan), and making it so, at start and on SIGHUP only. A plan
//! that cannot be carried out whole (a name a CLI-made feed holds, a local repository
//! that is none) refuses the file and changes nothing.
//!
//! A feed that leaves the file is retired, not removed: its tokens stay (so declaring
//! it again brings the same hook URLs back) but open nothing, its waiting builds are
//! cancelled, a running one finishes, and its history stays readable.

use crate::admin::commands::{self, CommandError};
use crate::admin::proto::{PlanChange, PlanView};
use crate::app::App;
use crate::clock::now_ms;
use crate::config::{self, Config, DeclaredFeed};
use crate::feed::{Feed, FeedName};
use crate::secret::Secret;

/// What applying a file does to one feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// A new declared feed, with a new default token.
    Add,
    /// A declared feed whose settings change.
    Change,
    /// A declared feed that left the file.
    Retire,
    /// A retired feed declared again.
    Revive,
}

impl Action {
    fn word(self) -> &'static str {
        match self {
            Self::Add => "add",
            Self::Change => "change",
            Self::Retire => "retire",
            Self::Revive => "revive",
        }
    }
}

/// One feed's step of a plan.
#[derive(Debug)]
struct Step {
    name: FeedName,
    action: Action,
    /// The settings that change (for `Change` and `Revive`).
    keys: Vec<&'static str>,
    /// What the file declares (all but `Retire`).
    declared: Option<DeclaredFeed>,
}

/// Every step applying a config file takes, in name order, retirements last.
#[derive(Debug)]
pub(crate) struct Plan {
    steps: Vec<Step>,
    /// Declared feeds that stay as they are.
    unchanged: usize,
}

/// What applying `config`'s declared feeds would change, refused as a whole when any
/// of it could not be done. Blocking: reads the store, secret files and local repos.
pub(crate) fn plan(app: &App, config: &Config) -> Result<Plan, CommandError> {
    let stored = app.store.feeds()?;
    let mut plan = Plan {
        steps: Vec::new(),
        unchanged: 0,
    };
    for (name, declared) in &config.declared {
        let old = stored.iter().find(|f| &f.name == name);
        let (action, keys) = match old {
            None => (Action::Add, Vec::new()),
            Some(old) if !old.declared => return Err(taken(config, name)),
            Some(old) => {
                let mut keys = config::changed_keys(old, declared);
                if !keys.contains(&"secret") && secret_changed(app, old, declared)? {
                    keys.push("secret");
                }
                match (old.retired(), keys.is_empty()) {
                    (true, _) => (Action::Revive, keys),
                    (false, true) => {
                        plan.unchanged += 1;
                        continue;
                    }
                    (false, false) => (Action::Change, keys),
                }
            }
        };
        if action == Action::Add || keys.contains(&"repo") {
            check_repo(app, config, declared)?;
        }
        plan.steps.push(Step {
            name: name.clone(),
            action,
            keys,
            declared: Some(declared.clone()),
        });
    }
    let gone = stored
        .iter()
        .filter(|f| f.declared && !f.retired() && !config.declared.contains_key(&f.name));
    for feed in gone {
        plan.steps.push(Step {
            name: feed.name.clone(),
            action: Action::Retire,
            keys: Vec::new(),
            declared: None,
        });
    }
    Ok(plan)
}

/// The plan as the operator reads it (`check-config --plan`, and the reload's log).
pub(crate) fn view(plan: &Plan, config: &Config) -> PlanView {
    PlanView {
        file: config
            .source
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        changes: plan
            .steps
            .iter()
            .map(|s| PlanChange {
                feed: s.name.to_string(),
                action: s.action.word().to_owned(),
                keys: s.keys.iter().map(|k| k.to_string()).collect(),
                line: s.declared.as_ref().and_then(|d| d.line),
            })
            .collect(),
        unchanged: plan.unchanged,
    }
}

/// Makes the stored feeds what `config` declares (start-up and SIGHUP). Nothing is
/// written unless the whole plan holds; returns what was done.
pub(crate) async fn apply(app: &App, config: &Config) -> Result<PlanView, CommandError> {
    let config = std::sync::Arc::new(config.clone());
    let shared = config.clone();
    let plan = commands::blocking(app, move |app| {
        let plan = plan(app, &shared)?;
        for step in &plan.steps {
            apply_step(app, step)?;
        }
        Ok(plan)
    })
    .await?;
    for step in plan.steps.iter().filter(|s| s.action == Action::Retire) {
        cancel_waiting(app, &step.name).await?;
    }
    commands::blocking(app, |app| {
        app.routes.reload(&app.store, &app.config().data_dir)?;
        Ok(())
    })
    .await?;
    app.scheduler.wake();
    Ok(view(&plan, &config))
}

/// Writes one step: the feed record, its secret file, and a new feed's first token.
fn apply_step(app: &App, step: &Step) -> Result<(), CommandError> {
    let name = step.name.as_str();
    let Some(declared) = &step.declared else {
        app.store.update_feed(name, |old| Feed {
            retired_ms: Some(now_ms()),
            ..old
        })?;
        tracing::info!(
            feed = name,
            "declared feed retired: it left the config file"
        );
        return Ok(());
    };
    write_secret(app, declared)?;
    match step.action {
        Action::Add => {
            let feed = Feed {
                created_ms: now_ms(),
                ..declared.feed.clone()
            };
            app.store.add_feed(&feed)?;
            commands::add_token(app, name, "default".into())?;
        }
        _ => {
            app.store.update_feed(name, |old| Feed {
                created_ms: old.created_ms,
                paused: match declared.paused_set {
                    true => declared.feed.paused,
                    false => old.paused,
                },
                ..declared.feed.clone()
            })?;
        }
    }
    let keys = step.keys.join(",");
    tracing::info!(feed = name, keys, "declared feed {}", step.action.word());
    Ok(())
}

/// Cancels a retired feed's queued and deferred builds (a running one finishes).
async fn cancel_waiting(app: &App, name: &FeedName) -> Result<(), CommandError> {
    let feed = name.to_string();
    let waiting = commands::blocking(app, move |app| Ok(app.store.waiting_of(&feed)?)).await?;
    for id in waiting {
        app.scheduler
            .cancel(id)
            .await
            .map_err(|e| CommandError::Other(e.to_string()))?;
        tracing::info!(feed = %name, build = id.0, "build cancelled: its feed was retired");
    }
    Ok(())
}

/// A name the file declares that a CLI-made feed already has.
fn taken(config: &Config, name: &FeedName) -> CommandError {
    CommandError::Other(format!(
        "{}: feed {name} already exists, made with `hookd admin feed add`; let the file own \
         it with `hookd admin feed adopt {name}`, or declare another name",
        config.declared_at(name)
    ))
}

/// A declared local repository must be one, as `feed add` requires.
fn check_repo(app: &App, config: &Config, declared: &DeclaredFeed) -> Result<(), CommandError> {
    let feed = &declared.feed;
    (app.check_repo)(config, feed.name.as_str(), &feed.repo, false)
        .map(|_| ())
        .map_err(|e| {
            CommandError::Other(format!(
                "{}, feeds.{}.repo: {e}",
                config.declared_at(&feed.name),
                feed.name
            ))
        })
}

/// The webhook secret `secret_file` names (read at every apply, so an operator can
/// replace the file and reload).
fn declared_secret(declared: &DeclaredFeed) -> Result<Option<Secret>, CommandError> {
    let Some(path) = &declared.secret_file else {
        return Ok(None);
    };
    let unusable = |why: String| {
        CommandError::Other(format!(
            "feeds.{}.secret_file: cannot use {} as a webhook secret: {why}",
            declared.feed.name,
            path.display()
        ))
    };
    let text = std::fs::read_to_string(path).map_err(|e| unusable(e.to_string()))?;
    let secret = text.trim_end_matches(['\n', '\r']).to_owned();
    Secret::new(secret)
        .map(Some)
        .map_err(|_| unusable("it is empty".into()))
}

/// Whether the secret file says something other than the stored secret.
fn secret_changed(app: &App, old: &Feed, declared: &DeclaredFeed) -> Result<bool, CommandError> {
    let Some(new) = declared_secret(declared)? else {
        return Ok(false);
    };
    let stored = crate::secret::load(&app.config().data_dir, &old.name)
        .map_err(|e| CommandError::Other(format!("cannot read the webhook secret: {e}")))?;
    Ok(stored.is_none_or(|s| s.expose() != new.expose()))
}

/// Puts the declared secret where the webhook path reads it, or removes it.
fn write_secret(app: &App, declared: &DeclaredFeed) -> Result<(), CommandError> {
    let data_dir = app.config().data_dir.clone();
    let name = &declared.feed.name;
    let result = match declared_secret(declared)? {
        Some(secret) => crate::secret::save(&data_dir, name, &secret),
        None => crate::secret::remove(&data_dir, name),
    };
    result.map_err(|e| CommandError::Other(format!("cannot store the webhook secret: {e}")))
}
