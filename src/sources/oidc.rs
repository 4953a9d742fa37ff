//! Access tokens from an OpenID Connect provider for reading its directory: the provider's
//! metadata is discovered from the issuer (`openidconnect`), and a client-credentials token is
//! asked from its token endpoint (with the configured scopes and resource indicator). A token
//! is kept until the directory refuses it, then renewed. Secrets and tokens never reach a log
//! line or an error message.

use std::time::Duration;

use openidconnect::core::{CoreClient, CoreProviderMetadata};
use openidconnect::reqwest;
use openidconnect::{
    ClientId, ClientSecret, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl,
    OAuth2TokenResponse, Scope,
};
use secrecy::{ExposeSecret, SecretString};

use crate::config::{OidcSourceConfig, resolve_secret};
use crate::error::{ConfigProblem, Error};

/// A client built from discovered metadata (its token endpoint may or may not be set).
pub(crate) type DiscoveredClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

pub(crate) const SOURCE: &str = "oidc";

/// The HTTP client for the provider and the directory: no redirects (a redirect could carry a
/// token elsewhere), the configured timeout, and the private CA when one is configured.
pub(crate) fn http_client(config: &OidcSourceConfig) -> Result<reqwest::blocking::Client, Error> {
    provider_http_client(
        config.timeout_seconds,
        config.tls_ca_file.as_deref(),
        "tls_ca_file",
    )
}

/// An HTTP client for an OpenID Connect provider: no redirects, `timeout_seconds`, and the
/// CAs of `tls_ca_file` (configured under `ca_key`) trusted besides the system's.
pub(crate) fn provider_http_client(
    timeout_seconds: u64,
    tls_ca_file: Option<&std::path::Path>,
    ca_key: &str,
) -> Result<reqwest::blocking::Client, Error> {
    let mut builder = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(timeout_seconds.max(1)));
    if let Some(path) = tls_ca_file {
        let problem = |message: String| Error::Config(vec![ConfigProblem::new(ca_key, message)]);
        let pem = std::fs::read(path)
            .map_err(|e| problem(format!("cannot read {}: {e}", path.display())))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| problem(format!("{} is not PEM: {e}", path.display())))?;
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder
        .build()
        .map_err(|e| Error::Internal(format!("HTTP client: {e}")))
}

/// A provider client's secret (inline or from its file) and issuer URL, configured under
/// `key_prefix` (`""` for a source's own keys, `auth.oidc.` for staff sign-in).
pub(crate) fn client_secret_and_issuer(
    key_prefix: &str,
    secret: Option<&SecretString>,
    secret_file: Option<&std::path::Path>,
    issuer: &str,
) -> Result<(SecretString, IssuerUrl), Error> {
    let secret = resolve_secret(&format!("{key_prefix}client_secret"), secret, secret_file)
        .map_err(|p| Error::Config(vec![p]))?
        .ok_or_else(|| {
            Error::Config(vec![ConfigProblem::new(
                &format!("{key_prefix}client_secret_file"),
                "set client_secret_file (or client_secret)",
            )])
        })?;
    let issuer = IssuerUrl::new(issuer.to_string()).map_err(|e| {
        Error::Config(vec![ConfigProblem::new(
            &format!("{key_prefix}issuer"),
            format!("not a URL: {e}"),
        )])
    })?;
    Ok((secret, issuer))
}

/// Tokens for one sync.
pub(crate) struct Tokens {
    client: DiscoveredClient,
    client_id: String,
    scopes: Vec<String>,
    resource: Option<String>,
    current: Option<SecretString>,
    pub issued: u32,
}

impl Tokens {
    /// Discovers the provider named by `config.issuer`.
    pub fn discover(
        config: &OidcSourceConfig,
        http: &reqwest::blocking::Client,
    ) -> Result<Tokens, Error> {
        let (secret, issuer) = client_secret_and_issuer(
            "",
            config.client_secret.as_ref(),
            config.client_secret_file.as_deref(),
            &config.issuer,
        )?;
        let metadata = CoreProviderMetadata::discover(&issuer, http).map_err(|e| {
            Error::source(
                SOURCE,
                format!(
                    "cannot discover the OpenID Connect provider {}: {}",
                    config.issuer,
                    error_chain(&e)
                ),
            )
        })?;
        let Some(token_url) = metadata.token_endpoint() else {
            return Err(Error::source(
                SOURCE,
                format!("the provider {} announces no token endpoint", config.issuer),
            ));
        };
        // The client secret goes to this address: it must be as protected as the issuer.
        if token_url.url().scheme() != "https" && !config.allow_insecure_http {
            return Err(Error::source(
                SOURCE,
                format!(
                    "the provider's token endpoint {} is not https; the client secret is not \
                     sent there (allow_insecure_http = true accepts it)",
                    token_url.as_str()
                ),
            ));
        }
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(config.client_id.clone()),
            Some(ClientSecret::new(secret.expose_secret().to_string())),
        );
        Ok(Tokens {
            client,
            client_id: config.client_id.clone(),
            scopes: config.scopes.clone(),
            resource: config.resource.clone(),
            current: None,
            issued: 0,
        })
    }

    /// The token in use, asking for one if there is none yet.
    pub fn token(&mut self, http: &reqwest::blocking::Client) -> Result<SecretString, Error> {
        if let Some(token) = &self.current {
            return Ok(token.clone());
        }
        self.renew(http)
    }

    /// Asks the provider for a new token (the directory refused the previous one).
    pub fn renew(&mut self, http: &reqwest::blocking::Client) -> Result<SecretString, Error> {
        let mut request = self
            .client
            .exchange_client_credentials()
            .map_err(|e| Error::source(SOURCE, format!("no token endpoint: {e}")))?;
        for scope in &self.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        if let Some(resource) = &self.resource {
            request = request.add_extra_param("resource", resource.clone());
        }
        let response = request.request(http).map_err(|e| {
            Error::source(
                SOURCE,
                format!(
                    "the provider refused a client-credentials token for `{}`: {}",
                    self.client_id,
                    error_chain(&e)
                ),
            )
        })?;
        let token = SecretString::from(response.access_token().secret().clone());
        self.current = Some(token.clone());
        self.issued += 1;
        Ok(token)
    }
}

/// An error and its causes, in one line (never a token: the oauth2 errors carry none).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let more = inner.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = inner.source();
    }
    text
}
