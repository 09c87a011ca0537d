//! Secrets given either inline or as a file to read at load (systemd `LoadCredential=`,
//! Kubernetes secret volumes), never both, and never shown in a message.

use std::path::Path;

use secrecy::SecretString;

use super::problem::Problem;
use super::reader::{Problems, Table};

/// Reads the secret at `key` or the file named at `file_key`.
///
/// `Some(Some(secret))` when one was given and is good, `Some(None)` when neither was
/// given, `None` when a problem was recorded. A file's trailing newline (as `echo` and most
/// secret stores leave it) is dropped. Messages name the key and the file, never the secret.
pub(super) fn value_or_file(
    t: &mut Table,
    key: &'static str,
    file_key: &'static str,
    p: &mut Problems,
) -> Option<Option<SecretString>> {
    if t.has(key) && t.has(file_key) {
        p.push(Problem::new(
            t.key_path(key),
            format!("give either `{key}` or `{file_key}`, not both"),
        ));
        t.declare(key);
        t.declare(file_key);
        let _ = (t.take(key), t.take(file_key));
        return None;
    }
    if t.has(key) {
        return t.secret(key, p).map(Some);
    }
    if t.has(file_key) {
        let path = t.file_path(file_key, p)?;
        return match read_secret_file(&path) {
            Ok(secret) => Some(Some(secret)),
            Err(message) => {
                p.push(Problem::new(t.key_path(file_key), message));
                None
            }
        };
    }
    t.declare(key);
    t.declare(file_key);
    Some(None)
}

/// The secret in `path`, without its trailing newline.
pub(super) fn read_secret_file(path: &Path) -> Result<SecretString, String> {
    // The io error says what went wrong (missing, unreadable, not UTF-8) and never
    // includes the file's contents.
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(SecretString::from(secret.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn a_secret_file_loses_its_trailing_newline_only() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("password");
        std::fs::write(&path, "  s3cret \r\n\n").expect("written");
        let secret = read_secret_file(&path).expect("read");
        assert_eq!(secret.expose_secret(), "  s3cret ");
    }

    #[test]
    fn an_empty_secret_file_is_a_problem_naming_the_file() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("token");
        std::fs::write(&path, "\n").expect("written");
        let err = read_secret_file(&path).expect_err("empty");
        assert!(err.contains("token is empty"), "{err}");
    }
}
