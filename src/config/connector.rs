//! A connector's `configuration` table, turned into the JSON Airbyte takes, with its secrets
//! read in: `"${ENV_VAR}"` from the environment and `{ file = "/path" }` from a file.
//!
//! Problems name the key path and the variable or file, never a value: any value in a
//! connector configuration may be a password.

use std::ffi::OsString;
use std::path::Path;

use config::{Value, ValueKind};
use secrecy::ExposeSecret;
use serde_json::{Map, Number, Value as Json};

use super::problem::Problem;
use super::reader::Problems;
use super::secret::read_secret_file;
use super::settings::ConnectorConfiguration;

/// Where `${NAME}` references are looked up: the process environment, or a map in tests.
pub(super) type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<OsString>;

/// Reads a `configuration` table at `path`; `None` (with problems recorded) if anything in
/// it is wrong.
pub(super) fn read(
    path: &str,
    value: Value,
    env: EnvLookup<'_>,
    p: &mut Problems,
) -> Option<ConnectorConfiguration> {
    if !matches!(value.kind, ValueKind::Table(_)) {
        p.push(Problem::new(
            path,
            "expected a table: the connector's connectionConfiguration",
        ));
        return None;
    }
    let before = p.len();
    let mut reader = Reader {
        env,
        secrets: Vec::new(),
        p,
    };
    let json = reader.value(value, path, "");
    let secrets = reader.secrets;
    (p.len() == before).then(|| ConnectorConfiguration::new(json, secrets))
}

struct Reader<'a, 'p> {
    env: EnvLookup<'a>,
    /// JSON pointers of the values read from the environment or a file.
    secrets: Vec<String>,
    p: &'p mut Problems,
}

impl Reader<'_, '_> {
    /// One value at key path `path` and JSON pointer `pointer`.
    fn value(&mut self, value: Value, path: &str, pointer: &str) -> Json {
        match value.kind {
            ValueKind::Nil => Json::Null,
            ValueKind::Boolean(b) => Json::Bool(b),
            ValueKind::I64(n) => Json::from(n),
            ValueKind::U64(n) => Json::from(n),
            ValueKind::I128(n) => self.big(i64::try_from(n).ok().map(Json::from), path),
            ValueKind::U128(n) => self.big(u64::try_from(n).ok().map(Json::from), path),
            ValueKind::Float(x) => match Number::from_f64(x) {
                Some(n) => Json::Number(n),
                None => {
                    self.p.push(Problem::new(
                        path,
                        "not a finite number (JSON has no NaN or inf)",
                    ));
                    Json::Null
                }
            },
            ValueKind::String(text) => match interpolate(&text, self.env) {
                Ok((text, from_env)) => {
                    if from_env {
                        self.secrets.push(pointer.to_string());
                    }
                    Json::String(text)
                }
                Err(message) => {
                    self.p.push(Problem::new(path, message));
                    Json::Null
                }
            },
            ValueKind::Array(items) => Json::Array(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| {
                        self.value(item, &format!("{path}[{i}]"), &format!("{pointer}/{i}"))
                    })
                    .collect(),
            ),
            ValueKind::Table(entries) => {
                if let Some(file) = file_reference(&entries) {
                    return self.file(file, path, pointer);
                }
                let mut map = Map::new();
                let mut entries: Vec<(String, Value)> = entries.into_iter().collect();
                // The tree is a hash map: sorted, problems come out the same way every time.
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                for (key, item) in entries {
                    let child = self.value(
                        item,
                        &format!("{path}.{key}"),
                        &format!("{pointer}/{}", escape_pointer(&key)),
                    );
                    map.insert(key, child);
                }
                Json::Object(map)
            }
        }
    }

    fn big(&mut self, number: Option<Json>, path: &str) -> Json {
        number.unwrap_or_else(|| {
            self.p
                .push(Problem::new(path, "the number is too large for Airbyte"));
            Json::Null
        })
    }

    /// The contents of the file a `{ file = "..." }` table names (its path may hold
    /// `${NAME}` references, e.g. `${CREDENTIALS_DIRECTORY}/password`).
    fn file(&mut self, file: &Value, path: &str, pointer: &str) -> Json {
        let file_path = format!("{path}.file");
        let name = match &file.kind {
            ValueKind::String(name) => name,
            _ => {
                self.p
                    .push(Problem::new(file_path, "expected a file path string"));
                return Json::Null;
            }
        };
        let name = match interpolate(name, self.env) {
            Ok((name, _)) => name,
            Err(message) => {
                self.p.push(Problem::new(file_path, message));
                return Json::Null;
            }
        };
        match read_secret_file(Path::new(&name)) {
            Ok(secret) => {
                self.secrets.push(pointer.to_string());
                Json::String(secret.expose_secret().to_string())
            }
            Err(message) => {
                self.p.push(Problem::new(file_path, message));
                Json::Null
            }
        }
    }
}

/// The path value of a `{ file = "..." }` table: a table whose only key is `file`.
fn file_reference(entries: &config::Map<String, Value>) -> Option<&Value> {
    match entries.len() {
        1 => entries.get("file"),
        _ => None,
    }
}

/// `~` and `/` escaped as a JSON pointer needs them.
pub(crate) fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// `text` with every `${NAME}` replaced by the environment variable `NAME` (`$${` stands for
/// a literal `${`), and whether any was. Errors name the variable, never the text around it.
fn interpolate(text: &str, env: EnvLookup<'_>) -> Result<(String, bool), String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut substituted = false;
    while let Some(at) = rest.find("${") {
        if rest[..at].ends_with('$') {
            // `$${`: a literal `${`, the doubled `$` dropped.
            out.push_str(&rest[..at - 1]);
            out.push_str("${");
            rest = &rest[at + 2..];
            continue;
        }
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let Some(end) = after.find('}') else {
            return Err("a `${` is not closed by `}` (write `$${` for a literal `${`)".into());
        };
        let name = &after[..end];
        if !is_variable_name(name) {
            return Err(
                "`${...}` must hold an environment variable name (letters, digits and `_`, \
                 not starting with a digit); write `$${` for a literal `${`"
                    .into(),
            );
        }
        let value =
            env(name).ok_or_else(|| format!("the environment variable {name} is not set"))?;
        let value = value
            .into_string()
            .map_err(|_| format!("the environment variable {name} is not valid UTF-8"))?;
        if value.is_empty() {
            return Err(format!("the environment variable {name} is empty"));
        }
        out.push_str(&value);
        substituted = true;
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok((out, substituted))
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<OsString> {
        match name {
            "PG_PASSWORD" => Some("s3cret".into()),
            "EMPTY" => Some(OsString::new()),
            _ => None,
        }
    }

    #[test]
    fn a_reference_is_replaced_wherever_it_stands_in_the_string() {
        assert_eq!(
            interpolate("${PG_PASSWORD}", &env),
            Ok(("s3cret".to_string(), true))
        );
        assert_eq!(
            interpolate("user:${PG_PASSWORD}@db", &env),
            Ok(("user:s3cret@db".to_string(), true))
        );
        assert_eq!(interpolate("plain", &env), Ok(("plain".to_string(), false)));
    }

    #[test]
    fn a_doubled_dollar_keeps_a_literal_reference() {
        assert_eq!(
            interpolate("$${SOURCE_NAMESPACE}", &env),
            Ok(("${SOURCE_NAMESPACE}".to_string(), false))
        );
    }

    #[test]
    fn a_missing_or_empty_variable_is_named_and_the_text_is_not_shown() {
        let err = interpolate("pre-hunter2-${NOPE}", &env).expect_err("unset");
        assert_eq!(err, "the environment variable NOPE is not set");
        let err = interpolate("${EMPTY}", &env).expect_err("empty");
        assert_eq!(err, "the environment variable EMPTY is empty");
        let err = interpolate("hunter2${", &env).expect_err("unclosed");
        assert!(!err.contains("hunter2"), "{err}");
        let err = interpolate("${not a name}", &env).expect_err("bad name");
        assert!(!err.contains("not a name"), "{err}");
    }

    #[test]
    fn json_pointers_escape_slashes_and_tildes() {
        assert_eq!(escape_pointer("a/b~c"), "a~1b~0c");
    }
}
