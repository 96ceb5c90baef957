//! Intake: the webhook path, one hook request from token to reply. Resolves the token
//! in the routing table ([`Routes`]), verifies the signature, parses the delivery,
//! applies the feed's watch rules, admits the trigger durably, and says what to answer.
//! Every outcome is recorded as a delivery.

use bytes::Bytes;
use http::HeaderMap;

use crate::build::{Trigger, TriggerKind};
use crate::clock::now_ms;
use crate::feed::Feed;
use crate::hook::{self, ChangeDecision, Decision, Delivery, Provider, SignatureError, WatchRules};
use crate::metrics::Metrics;
use crate::reply::{top_index, HookReply, RefReply};
use crate::scheduler::Scheduler;
use crate::scheduler::{ScheduleError, Submission};
use crate::secret::Secret;
use crate::store::Store;
use crate::store::{Admission, DeliveryRecord};
use crate::token::ServerKey;

mod routes;

pub(crate) use routes::Routes;

/// The parts of the daemon a hook request uses.
#[derive(Clone, Copy)]
pub(crate) struct Context<'a> {
    /// Admits triggers.
    pub(crate) scheduler: &'a Scheduler,
    /// Records deliveries that queue nothing.
    pub(crate) store: &'a Store,
    /// Delivery and admission counters.
    pub(crate) metrics: &'a Metrics,
    /// Whether SHA-1 signatures are accepted (from the settings in force).
    pub(crate) allow_sha1: bool,
}

/// The feed a live hook token opens, with its webhook secret (and the next one,
/// while a rotation is pending).
pub(crate) struct Target {
    feed: Feed,
    secrets: Secrets,
}

/// The secrets a delivery may be signed with.
struct Secrets {
    /// The feed's secret.
    current: Option<Secret>,
    /// The one a pending rotation moves to.
    pending: Option<Secret>,
}

/// Resolves a hook token before its request body is read, so a request with an
/// unknown, malformed or revoked token costs no body read.
pub(crate) fn target(routes: &Routes, key: &ServerKey, token: &str) -> Option<Target> {
    let entry = routes.lookup(key.check(token))?;
    Some(Target {
        feed: entry.feed.clone(),
        secrets: Secrets {
            current: entry.secret.clone(),
            pending: entry.pending.clone(),
        },
    })
}

/// Handles one hook request whose body has been read within the limits.
pub(crate) async fn handle(
    ctx: Context<'_>,
    target: Target,
    headers: &HeaderMap,
    query: Option<&str>,
    body: Bytes,
) -> HookReply {
    let intake = Intake {
        ctx,
        feed: target.feed,
        headers,
        body,
    };
    intake.run(query, target.secrets).await
}

/// One request after the token check.
struct Intake<'a> {
    ctx: Context<'a>,
    feed: Feed,
    headers: &'a HeaderMap,
    body: Bytes,
}

impl Intake<'_> {
    async fn run(self, query: Option<&str>, secrets: Secrets) -> HookReply {
        let provider = hook::detect(self.headers, &self.body);
        if self.feed.has_secret {
            if let Err(refusal) = self.verify_either(provider, &secrets) {
                if refusal.unsigned && is_ping(self.headers, query, &self.body) {
                    let why = Some("unsigned test delivery".to_owned());
                    return self.record(provider, None, HookReply::Pong, why).await;
                }
                let reason = refusal.reason;
                let reply = HookReply::Unauthorized {
                    reason: reason.clone(),
                };
                return self.record(provider, None, reply, Some(reason)).await;
            }
        }
        let delivery = match hook::parse_bounded(self.headers, query, &self.body) {
            Ok(d) => d,
            Err(e) => {
                let reason = e.to_string();
                let reply = HookReply::BadRequest {
                    reason: reason.clone(),
                };
                return self.record(provider, None, reply, Some(reason)).await;
            }
        };
        let rules = WatchRules::of(&self.feed);
        if let Delivery::Push(push) = &delivery {
            if !push.also.is_empty() {
                let changes = hook::decide_changes(push, &rules);
                return self.admit_changes(&delivery, changes).await;
            }
        }
        match hook::decide(&delivery, &rules) {
            Decision::Pong => {
                self.record(provider, Some(&delivery), HookReply::Pong, None)
                    .await
            }
            Decision::NeedsRef(none) => {
                let reason = format!(
                    "{none}; name the ref to build, e.g. ?ref=refs/tags/v1.2 or ?branch=NAME"
                );
                let reply = HookReply::BadRequest {
                    reason: reason.clone(),
                };
                self.record(provider, Some(&delivery), reply, Some(reason))
                    .await
            }
            Decision::Ignore(reason) => {
                let reply = HookReply::Ignored {
                    reason: reason.clone(),
                };
                self.record(provider, Some(&delivery), reply, Some(reason))
                    .await
            }
            Decision::Build {
                git_ref,
                branch,
                commit,
            } => self.admit(&delivery, git_ref, branch, commit).await,
        }
    }

    /// Verifies against the feed's secret and, while a rotation is pending, against
    /// the next one too; a refusal speaks of the current secret.
    fn verify_either(&self, provider: Provider, secrets: &Secrets) -> Result<(), Refusal> {
        let current = self.verify(provider, secrets.current.as_ref());
        match (&current, &secrets.pending) {
            (Err(_), Some(next)) if self.verify(provider, Some(next)).is_ok() => Ok(()),
            _ => current,
        }
    }

    fn verify(&self, provider: Provider, secret: Option<&Secret>) -> Result<(), Refusal> {
        let Some(secret) = secret else {
            let reason = "the feed's secret file is missing on the server".to_owned();
            return Err(Refusal {
                reason,
                unsigned: false,
            });
        };
        let allow_sha1 = self.ctx.allow_sha1;
        hook::verify(provider, self.headers, &self.body, secret, allow_sha1).map_err(|e| Refusal {
            unsigned: matches!(
                e,
                SignatureError::Missing { .. } | SignatureError::Empty { .. }
            ),
            reason: e.to_string(),
        })
    }

    async fn admit(
        &self,
        delivery: &Delivery,
        git_ref: String,
        branch: String,
        commit: Option<String>,
    ) -> HookReply {
        let now = now_ms();
        let mut record = delivery_record(delivery.provider(), Some(delivery), now);
        record.git_ref = Some(git_ref.clone());
        record.commit = commit.clone();
        let sub = Submission {
            delivery: Some(record),
            ..self.submission(delivery, &git_ref, &branch, &commit, now)
        };
        let started = std::time::Instant::now();
        let result = self.ctx.scheduler.submit(sub).await;
        self.ctx
            .metrics
            .admission(started.elapsed().as_micros() as u64);
        let reply = match result {
            Ok(Admission::Replayed(first)) => return first,
            Ok(admission) => Ok(admission.reply()),
            Err(e) => Err(e),
        };
        self.answer(delivery, reply, 1)
    }

    /// Admits the watched ref changes of a multi-ref delivery in one durable batch
    /// with its record, and answers for every change; a delivery whose changes are
    /// all ignored is only recorded.
    async fn admit_changes(&self, delivery: &Delivery, changes: Vec<ChangeDecision>) -> HookReply {
        let now = now_ms();
        let subs: Vec<Submission> = changes
            .iter()
            .filter_map(|change| match &change.decision {
                Decision::Build {
                    git_ref,
                    branch,
                    commit,
                } => Some(self.submission(delivery, git_ref, branch, commit, now)),
                _ => None,
            })
            .collect();
        if subs.is_empty() {
            let reply = refs_reply(&changes, &[]);
            let reason = reply.reason();
            return self
                .record(delivery.provider(), Some(delivery), reply, reason)
                .await;
        }
        let record = delivery_record(delivery.provider(), Some(delivery), now);
        let judged = changes.clone();
        let settle = move |admissions: &[Admission], record: &mut DeliveryRecord| {
            let reply = refs_reply(&judged, admissions);
            if let Some(top) = judged.get(top_index(reply.refs())) {
                record.git_ref = Some(top.git_ref.clone());
                record.commit = top.commit.clone();
            }
            record.outcome = reply.word().to_owned();
            record.reason = reply.reason();
            record.reply = reply;
        };
        let started = std::time::Instant::now();
        let result = self
            .ctx
            .scheduler
            .submit_all(subs, Some(record), settle)
            .await;
        self.ctx
            .metrics
            .admission(started.elapsed().as_micros() as u64);
        let reply = match result {
            Ok(admissions) => match admissions.as_slice() {
                [Admission::Replayed(first)] => return first.clone(),
                _ => Ok(refs_reply(&changes, &admissions)),
            },
            Err(e) => Err(e),
        };
        self.answer(delivery, reply, changes.len())
    }

    /// The trigger of one watched ref, ready for the scheduler (its delivery is
    /// recorded by the caller).
    fn submission(
        &self,
        delivery: &Delivery,
        git_ref: &str,
        branch: &str,
        commit: &Option<String>,
        now: i64,
    ) -> Submission {
        let trigger = Trigger {
            accepted_ms: now,
            kind: TriggerKind::Hook,
            provider: delivery.provider().as_str().to_owned(),
            event: delivery.event().to_owned(),
            delivery_id: delivery.delivery_id().map(str::to_owned),
            commit: commit.clone(),
        };
        Submission {
            feed: self.feed.clone(),
            git_ref: git_ref.to_owned(),
            branch: branch.to_owned(),
            trigger,
            force: false,
            delivery: None,
        }
    }

    /// The reply to an admission (503 when it could not be made durable), counted
    /// and logged.
    fn answer(
        &self,
        delivery: &Delivery,
        admitted: Result<HookReply, ScheduleError>,
        refs: usize,
    ) -> HookReply {
        let reply = match admitted {
            Ok(reply) => reply,
            Err(ScheduleError::Store(e)) => {
                let key = format!("trigger not durable: {e}");
                if let Some(repeats) = crate::logging::once_per_interval(&key) {
                    tracing::error!(feed = %self.feed.name, error = %e, repeats, "trigger not durable; answering 503");
                }
                HookReply::Unavailable {
                    reason: "the trigger could not be stored durably; retry later".into(),
                }
            }
            Err(ScheduleError::ShuttingDown) => HookReply::Unavailable {
                reason: "shutting down".into(),
            },
        };
        let word = reply.word();
        let provider = delivery.provider().as_str();
        self.ctx.metrics.delivery(provider, word);
        tracing::info!(feed = %self.feed.name, provider, status = reply.parts().status.as_u16(), outcome = word, refs, "delivery");
        reply
    }

    /// Records a delivery that queued nothing, and returns its reply.
    async fn record(
        &self,
        provider: Provider,
        delivery: Option<&Delivery>,
        reply: HookReply,
        reason: Option<String>,
    ) -> HookReply {
        let outcome = reply.word();
        let mut record = delivery_record(provider, delivery, now_ms());
        record.reply = reply.clone();
        record.outcome = outcome.to_owned();
        if let Some(Delivery::Push(push)) = delivery {
            record.git_ref = push.git_ref.clone();
            record.commit = push.commit.clone();
        }
        self.ctx.metrics.delivery(provider.as_str(), outcome);
        tracing::info!(feed = %self.feed.name, provider = provider.as_str(), status = reply.parts().status.as_u16(), outcome, reason = reason.as_deref().unwrap_or(""), "delivery");
        record.reason = reason;
        let feed = self.feed.name.clone();
        let saved = self
            .ctx
            .store
            .write_durable(move |group| group.record_delivery(feed.as_str(), record))
            .await;
        if saved.is_err() {
            tracing::warn!(feed = %self.feed.name, "could not record a delivery in the history");
        }
        reply
    }
}

/// Why a delivery failed verification.
struct Refusal {
    /// For the 401 body and the delivery history.
    reason: String,
    /// The sender did not sign at all (as opposed to signing wrongly).
    unsigned: bool,
}

/// Whether the delivery is a test/ping. An unsigned ping (Bitbucket Server sends its
/// `diagnostics:ping` unsigned) is answered `pong`, since a ping builds nothing; a
/// wrongly signed one still gets 401, so a wrong secret shows at setup time.
fn is_ping(headers: &HeaderMap, query: Option<&str>, body: &[u8]) -> bool {
    matches!(
        hook::parse_bounded(headers, query, body),
        Ok(Delivery::Ping { .. })
    )
}

/// The reply to a multi-ref delivery: each change's own outcome, given the
/// admissions of the changes to build, in order.
fn refs_reply(changes: &[ChangeDecision], admissions: &[Admission]) -> HookReply {
    let mut admitted = admissions.iter();
    let refs = changes
        .iter()
        .map(|change| {
            let reply = match &change.decision {
                Decision::Build { .. } => admitted.next().map_or_else(
                    || HookReply::Unavailable {
                        reason: "not admitted".into(),
                    },
                    Admission::reply,
                ),
                Decision::Ignore(reason) => HookReply::Ignored {
                    reason: reason.clone(),
                },
                Decision::Pong | Decision::NeedsRef(_) => HookReply::Ignored {
                    reason: "not a ref change".into(),
                },
            };
            RefReply {
                git_ref: change.git_ref.clone(),
                reply,
            }
        })
        .collect();
    HookReply::Refs { refs }
}

fn delivery_record(provider: Provider, delivery: Option<&Delivery>, now: i64) -> DeliveryRecord {
    DeliveryRecord {
        at_ms: now,
        provider: provider.as_str().to_owned(),
        event: delivery.map(|d| d.event().to_owned()).unwrap_or_default(),
        delivery_id: delivery.and_then(|d| d.delivery_id().map(str::to_owned)),
        git_ref: None,
        commit: None,
        reply: HookReply::Pong,
        outcome: String::new(),
        reason: None,
    }
}
