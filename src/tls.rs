//! TLS for the process's HTTP clients: rustls on ring, installed once as the process-wide
//! provider. reqwest is built without a provider of its own (its default, aws-lc-rs, is
//! 1.3 MiB of code and a C library to build), so every client is made after `install`.

/// Makes ring the process's TLS provider. Cheap and idempotent: called by `main` and
/// again before each HTTP client is built, so no path can build one without it.
pub fn install() {
    // An error only says a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
