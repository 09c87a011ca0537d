//! How cronbyte proves who it is to Airbyte: none, basic, a static bearer token, or
//! OAuth client credentials exchanged for short-lived tokens.

use secrecy::SecretString;

/// The credentials the client sends. `Debug` never shows a secret: `SecretString`
/// prints as `[REDACTED]`.
#[derive(Clone, Debug, Default)]
pub enum Auth {
    /// No `Authorization` header (a local abctl install with auth disabled).
    #[default]
    None,
    /// HTTP basic auth, as old docker-compose installs put it in front of the API.
    Basic {
        username: String,
        password: SecretString,
    },
    /// A static bearer token (an Airbyte Cloud API key, or a token minted elsewhere).
    Bearer { token: SecretString },
    /// Client credentials exchanged at `{base_url}/applications/token` for a bearer
    /// token, which is cached and refreshed before it expires.
    ClientCredentials {
        client_id: String,
        client_secret: SecretString,
    },
}
