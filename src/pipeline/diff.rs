//! Field-level differences between a declared connector configuration and the one Airbyte
//! holds, shown with every secret masked.
//!
//! Only declared fields are compared: what Airbyte adds (defaults its connector fills in)
//! is no drift. A value Airbyte shows as its mask `**********` equals any declared value:
//! Airbyte never shows a stored secret, so a secret alone can never be seen to differ.

use serde_json::Value;

use super::plan::FieldChange;
use crate::config::{ConnectorConfiguration, escape_pointer};

/// What Airbyte returns in place of every secret it stores.
pub(crate) const MASK: &str = "**********";

/// How a secret is shown in any output.
pub(crate) const SECRET_SHOWN: &str = "(secret)";

/// The fields of `declared` that differ from `current` (Airbyte's), as `configuration.a.b`.
pub(crate) fn configuration(
    declared: &ConnectorConfiguration,
    current: &Value,
) -> Vec<FieldChange> {
    let mut changes = Vec::new();
    compare(
        declared,
        declared.expose(),
        Some(current),
        "configuration",
        "",
        &mut changes,
    );
    changes
}

/// Every leaf of `declared`, for an object about to be created.
pub(crate) fn listing(declared: &ConnectorConfiguration) -> Vec<FieldChange> {
    let mut changes = Vec::new();
    compare(
        declared,
        declared.expose(),
        None,
        "configuration",
        "",
        &mut changes,
    );
    changes
}

fn compare(
    declared: &ConnectorConfiguration,
    wanted: &Value,
    current: Option<&Value>,
    field: &str,
    pointer: &str,
    out: &mut Vec<FieldChange>,
) {
    if let Value::Object(map) = wanted {
        // An object is compared key by key, so Airbyte's extra keys are no drift; a current
        // value that is not an object counts as empty.
        for (key, child) in map {
            let child_pointer = format!("{pointer}/{}", escape_pointer(key));
            compare(
                declared,
                child,
                current.and_then(|c| c.get(key)),
                &format!("{field}.{key}"),
                &child_pointer,
                out,
            );
        }
        if map.is_empty() && current.is_none() {
            out.push(FieldChange::new(field, None, Some("{}".into())));
        }
        return;
    }
    // A list as long as Airbyte's is compared item by item, so a secret Airbyte masks
    // inside it is no drift either.
    if let (Value::Array(items), Some(Value::Array(have))) = (wanted, current)
        && items.len() == have.len()
    {
        for (i, (item, had)) in items.iter().zip(have).enumerate() {
            compare(
                declared,
                item,
                Some(had),
                &format!("{field}[{i}]"),
                &format!("{pointer}/{i}"),
                out,
            );
        }
        return;
    }
    if current.is_some_and(|c| c == MASK) {
        return;
    }
    if current.is_some_and(|c| same(c, wanted)) {
        return;
    }
    let secret = is_secret(declared, pointer);
    let shown = |value: &Value| {
        if secret {
            SECRET_SHOWN.to_string()
        } else {
            value.to_string()
        }
    };
    out.push(FieldChange::new(
        field,
        current.map(shown),
        Some(shown(wanted)),
    ));
}

/// Equal as JSON, numbers by value (TOML's `1.0` is Airbyte's `1`).
pub(crate) fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Whether the value at `pointer` (or anything in it) is a secret: read from the
/// environment or a file, or under a key whose name says it is one.
fn is_secret(declared: &ConnectorConfiguration, pointer: &str) -> bool {
    let key = pointer.rsplit('/').next().unwrap_or_default();
    declared.is_secret(pointer) || looks_secret(key) || within_secret(declared, pointer)
}

/// Whether a secret lies inside the array or object at `pointer`.
fn within_secret(declared: &ConnectorConfiguration, pointer: &str) -> bool {
    let prefix = format!("{pointer}/");
    declared
        .expose()
        .pointer(pointer)
        .is_some_and(|value| contains_secret(declared, value, &prefix))
}

fn contains_secret(declared: &ConnectorConfiguration, value: &Value, prefix: &str) -> bool {
    match value {
        Value::Array(items) => items.iter().enumerate().any(|(i, item)| {
            let pointer = format!("{prefix}{i}");
            declared.is_secret(&pointer) || contains_secret(declared, item, &format!("{pointer}/"))
        }),
        Value::Object(map) => map.iter().any(|(key, item)| {
            let pointer = format!("{prefix}{}", escape_pointer(key));
            declared.is_secret(&pointer)
                || looks_secret(key)
                || contains_secret(declared, item, &format!("{pointer}/"))
        }),
        _ => false,
    }
}

/// Whether a configuration key names a secret. Airbyte decides from each connector's spec
/// (`airbyte_secret`); these names cover the common connectors, so that a secret written
/// inline in the config is still masked in output.
pub(crate) fn looks_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "api_key",
        "apikey",
        "access_key",
        "private_key",
        "ssh_key",
        "credentials",
        "client_secret",
    ]
    .iter()
    .any(|marker| key.contains(marker))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn declared(value: Value, secrets: &[&str]) -> ConnectorConfiguration {
        ConnectorConfiguration::new(value, secrets.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn only_declared_fields_that_differ_are_changes() {
        let wanted = declared(
            json!({"host": "db2", "port": 5432, "ssl_mode": {"mode": "require"}}),
            &[],
        );
        let current = json!({
            "host": "db1",
            "port": 5432.0,
            "ssl_mode": {"mode": "require"},
            "jdbc_url_params": "x",
        });
        let changes = configuration(&wanted, &current);
        assert_eq!(
            changes,
            vec![FieldChange::new(
                "configuration.host",
                Some("\"db1\"".into()),
                Some("\"db2\"".into())
            )]
        );
    }

    #[test]
    fn a_masked_secret_equals_any_declared_value() {
        let wanted = declared(json!({"password": "new-Zq9", "host": "db"}), &["/password"]);
        let current = json!({"password": MASK, "host": "db"});
        assert!(configuration(&wanted, &current).is_empty());
    }

    #[test]
    fn a_secret_masked_inside_a_list_is_no_drift_but_another_item_is() {
        let wanted = declared(
            json!({"keys": [{"name": "a", "private_key": "k-Zq9"}, "b"]}),
            &["/keys/0/private_key"],
        );
        let current = json!({"keys": [{"name": "a", "private_key": MASK}, "c"]});
        let changes = configuration(&wanted, &current);
        assert_eq!(
            changes,
            vec![FieldChange::new(
                "configuration.keys[1]",
                Some("\"c\"".into()),
                Some("\"b\"".into())
            )]
        );
    }

    #[test]
    fn secrets_are_shown_masked_by_origin_by_name_and_inside_lists() {
        let wanted = declared(
            json!({
                "url": "postgres://u:env-Zq9@db",
                "api_key": "inline-Zq9",
                "hosts": ["a", "list-Zq9"],
                "port": 1,
            }),
            &["/url", "/hosts/1"],
        );
        let listed = listing(&wanted);
        let shown = format!("{listed:?}");
        assert!(!shown.contains("Zq9"), "{shown}");
        assert!(shown.contains("(secret)"), "{shown}");
        assert!(shown.contains("configuration.port"), "{shown}");
    }
}
