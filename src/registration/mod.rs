//! The webhook on the forge: hookd creates, repairs, inspects and deletes it through
//! the forge's API (`hookd admin hook register|status|unregister`), with the
//! `[feeds.NAME.status]` settings and token the commit status posts use, over the
//! outbox's HTTP client. `api` knows each forge's calls, `reach` whether the forge
//! could deliver to `public_url`; the admin side decides what to do with them.

pub(crate) mod api;
pub(crate) mod reach;

use crate::config::Forge;
use crate::outbound::client::Client;
use crate::secret::Secret;

pub(crate) use api::{ApiError, Call, ForgeHook, Wanted};

/// One repository's webhooks on one forge, as one token sees them.
pub(crate) struct Remote {
    /// Which forge.
    forge: Forge,
    /// API base without a trailing slash.
    api_url: String,
    /// The repository as the forge's API names it.
    repo: String,
    /// The API token.
    token: Secret,
    /// The outbox's client (TLS, timeouts, proxy).
    client: Client,
}

/// Why a call to the forge did not do what was asked; the text is for the operator.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RemoteError {
    /// The request could not be made or the reply was not the documented one.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The forge said no (401, 403, 404, …): what to fix.
    #[error("{0}")]
    Refused(String),
    /// The forge did not answer.
    #[error("cannot {doing}: {forge} at {api_url} did not answer: {why}")]
    Unreachable {
        /// What was asked.
        doing: &'static str,
        /// The forge's word.
        forge: &'static str,
        /// Where.
        api_url: String,
        /// What the client said.
        why: String,
    },
}

impl Remote {
    /// A view of `repo` on the forge at `api_url`, asked with `token`.
    pub(crate) fn new(
        forge: Forge,
        api_url: String,
        repo: String,
        token: Secret,
        client: Client,
    ) -> Self {
        Self {
            forge,
            api_url,
            repo,
            token,
            client,
        }
    }

    /// Which forge.
    pub(crate) fn forge(&self) -> Forge {
        self.forge
    }

    /// The repository, for messages.
    pub(crate) fn repo(&self) -> &str {
        &self.repo
    }

    /// Every webhook of the repository.
    pub(crate) async fn hooks(&self) -> Result<Vec<ForgeHook>, RemoteError> {
        let body = self.send(Call::List).await?;
        Ok(api::parse_list(self.forge, &body)?)
    }

    /// One webhook, as the forge shows it now.
    pub(crate) async fn hook(&self, id: &str) -> Result<ForgeHook, RemoteError> {
        let body = self.send(Call::Get(id)).await?;
        Ok(api::parse_one(self.forge, Call::Get(id), &body)?)
    }

    /// Creates the webhook; returns it as created.
    pub(crate) async fn create(&self, wanted: Wanted<'_>) -> Result<ForgeHook, RemoteError> {
        let ids = self.azure_ids().await?;
        let wanted = with_ids(wanted, &ids);
        let body = self.send(Call::Create(wanted)).await?;
        Ok(api::parse_one(self.forge, Call::Create(wanted), &body)?)
    }

    /// Sets an existing webhook to `wanted`.
    pub(crate) async fn update(&self, id: &str, wanted: Wanted<'_>) -> Result<(), RemoteError> {
        let ids = self.azure_ids().await?;
        let wanted = with_ids(wanted, &ids);
        self.send(Call::Update(id, wanted)).await.map(drop)
    }

    /// Azure DevOps names the project and repository of a subscription by id.
    async fn azure_ids(&self) -> Result<Option<(String, String)>, RemoteError> {
        if self.forge != Forge::AzureDevops {
            return Ok(None);
        }
        let body = self.send(Call::Repository).await?;
        Ok(Some(api::parse_repository(&body)?))
    }

    /// Deletes a webhook.
    pub(crate) async fn delete(&self, id: &str) -> Result<(), RemoteError> {
        self.send(Call::Delete(id)).await.map(drop)
    }

    /// Sends one call; a non-2xx reply is a refusal saying what to fix.
    async fn send(&self, call: Call<'_>) -> Result<String, RemoteError> {
        let site = api::Site {
            forge: self.forge,
            api_url: &self.api_url,
            repo: &self.repo,
            token: &self.token,
        };
        let request = api::request(&site, call)?;
        let reply = self
            .client
            .send(request)
            .await
            .map_err(|why| RemoteError::Unreachable {
                doing: call.doing(),
                forge: self.forge.word(),
                api_url: self.api_url.clone(),
                why,
            })?;
        if !reply.status.is_success() {
            return Err(RemoteError::Refused(api::refusal(
                &site,
                call,
                reply.status,
                &reply.body,
            )));
        }
        Ok(reply.body)
    }
}

/// `wanted` with Azure DevOps' ids, when there are some.
fn with_ids<'a>(wanted: Wanted<'a>, ids: &'a Option<(String, String)>) -> Wanted<'a> {
    Wanted {
        azure: ids.as_ref().map(|(p, r)| (p.as_str(), r.as_str())),
        ..wanted
    }
}
