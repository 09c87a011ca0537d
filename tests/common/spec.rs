//! Airbyte's real OpenAPI specs, loaded at test time, and JSON-schema validation of response
//! bodies against the schemas they declare.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};

/// Where the unmodified Airbyte specs live: `$CRONBYTE_AIRBYTE_SPECS`, or else
/// `<crate>/../shared/airbyte`. Panics naming both places when neither exists, so a missing
/// spec never lets a conformance test pass silently.
pub fn spec_dir() -> PathBuf {
    let from_env = std::env::var_os("CRONBYTE_AIRBYTE_SPECS").map(PathBuf::from);
    let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/airbyte");
    if let Some(dir) = from_env
        .as_ref()
        .filter(|d| d.join("config.yaml").is_file())
    {
        return dir.clone();
    }
    if beside.join("config.yaml").is_file() {
        return beside;
    }
    panic!(
        "the Airbyte OpenAPI specs were not found: looked in $CRONBYTE_AIRBYTE_SPECS ({}) and in {} \
         for config.yaml, api.yaml and api-problems.yaml",
        from_env.map_or_else(|| "unset".to_string(), |d| d.display().to_string()),
        beside.display()
    );
}

/// One spec file, rewritten where needed so a JSON-schema validator reads it as the server
/// means it.
pub struct Spec {
    name: String,
    doc: Value,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

impl Spec {
    pub fn load(dir: &Path, file: &str) -> Self {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let mut doc: Value = serde_norway::from_str(&text).unwrap_or_else(|e| {
            panic!("{} is not YAML this test understands: {e}", path.display())
        });
        let openapi_3_0 = doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.0"));
        if let Some(schemas) = doc.pointer_mut("/components/schemas") {
            // OpenAPI 3.0 says `nullable: true`; JSON schema needs "null" among the types.
            if openapi_3_0 {
                rewrite_nullable(schemas);
            }
            // Known spec defect (README "Known defects"): AirbyteStream requires `json_schema`
            // but names the property `jsonSchema` and forbids extra properties, so no real
            // stream could ever validate as published.
            if let Some(stream) = schemas.get_mut("AirbyteStream") {
                stream["required"] = json!(["name", "jsonSchema"]);
            }
            // The specs leave most objects open to unknown properties; closing them makes a
            // misspelt or invented field in an emulator answer fail instead of slipping by.
            // Members of `allOf` stay open, since each of them sees only part of the object.
            let composed = allof_members(schemas);
            if let Value::Object(named) = schemas {
                for (name, schema) in named.iter_mut() {
                    close_objects(schema, composed.contains(name));
                }
            }
        }
        Self {
            name: file.to_string(),
            doc,
            validators: Mutex::new(HashMap::new()),
        }
    }

    /// The JSON schema of a response (following `#/components/responses/...`), or `None`
    /// when the spec declares that status without a JSON body, or does not declare it.
    pub fn response_schema(&self, path: &str, method: &str, status: u16) -> Option<Value> {
        let operation = self.doc.get("paths")?.get(path)?.get(method)?;
        let mut response = operation.get("responses")?.get(status.to_string())?;
        if let Some(reference) = response.get("$ref").and_then(Value::as_str) {
            response = self.resolve(reference)?;
        }
        response
            .get("content")?
            .get("application/json")?
            .get("schema")
            .cloned()
    }

    /// Whether the spec declares this status for this operation at all.
    pub fn declares(&self, path: &str, method: &str, status: u16) -> bool {
        self.doc
            .pointer(&format!(
                "/paths/{}/{method}/responses/{status}",
                path.replace('~', "~0").replace('/', "~1")
            ))
            .is_some()
    }

    fn resolve(&self, reference: &str) -> Option<&Value> {
        self.doc.pointer(reference.strip_prefix('#')?)
    }

    /// A named schema of `components/schemas`.
    pub fn schema(&self, name: &str) -> Value {
        assert!(
            self.doc
                .pointer(&format!("/components/schemas/{name}"))
                .is_some(),
            "{} has no schema {name}",
            self.name
        );
        json!({"$ref": format!("#/components/schemas/{name}")})
    }

    /// A `$ref`'d default of a problem schema, e.g. the `type` a problem must carry.
    pub fn problem_default(&self, name: &str, field: &str) -> Option<Value> {
        let members = self
            .doc
            .pointer(&format!("/components/schemas/{name}/allOf"))?
            .as_array()?;
        members
            .iter()
            .find_map(|member| member.pointer(&format!("/properties/{field}/default")))
            .cloned()
    }

    /// The problem schema whose default `type` is `kind`, e.g. the one for
    /// `error:cron-validation/invalid-timezone`.
    pub fn problem_named_by_type(&self, kind: &str) -> Option<String> {
        let schemas = self.doc.pointer("/components/schemas")?.as_object()?;
        schemas
            .keys()
            .find(|name| {
                self.problem_default(name, "type")
                    .is_some_and(|default| default == kind)
            })
            .cloned()
    }

    /// Validates `instance` against `schema`, which may `$ref` into this spec's components.
    pub fn validate(&self, schema: &Value, instance: &Value) -> Result<(), String> {
        let validator = self.validator(schema)?;
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|error| format!("at {}: {error}", error.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} does not accept this body against {schema}:\n  {}\nbody: {instance:#}",
                self.name,
                errors.join("\n  ")
            ))
        }
    }

    fn validator(&self, schema: &Value) -> Result<Arc<jsonschema::Validator>, String> {
        let key = schema.to_string();
        let mut cache = self
            .validators
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(validator) = cache.get(&key) {
            return Ok(Arc::clone(validator));
        }
        // `components` beside the schema lets every `#/components/...` reference resolve
        // against this very document.
        let mut root = match schema {
            Value::Object(map) => map.clone(),
            other => {
                let mut map = Map::new();
                map.insert("allOf".into(), json!([other]));
                map
            }
        };
        root.insert("components".into(), self.doc["components"].clone());
        let validator = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&Value::Object(root))
            .map_err(|e| format!("{} schema {schema} does not compile: {e}", self.name))?;
        let validator = Arc::new(validator);
        cache.insert(key, Arc::clone(&validator));
        Ok(validator)
    }
}

/// Every schema node: `type: T, nullable: true` becomes `type: [T, "null"]`.
fn rewrite_nullable(node: &mut Value) {
    match node {
        Value::Object(map) => {
            if map.get("nullable") == Some(&Value::Bool(true)) {
                map.remove("nullable");
                if let Some(Value::String(kind)) = map.get("type").cloned() {
                    map.insert("type".into(), json!([kind, "null"]));
                }
                if let Some(Value::Array(values)) = map.get_mut("enum") {
                    values.push(Value::Null);
                }
            }
            for (key, child) in map.iter_mut() {
                if !matches!(key.as_str(), "example" | "examples" | "default" | "enum") {
                    rewrite_nullable(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_nullable),
        _ => {}
    }
}

/// Names of schemas used as `allOf` members anywhere.
fn allof_members(schemas: &Value) -> Vec<String> {
    fn walk(node: &Value, found: &mut Vec<String>) {
        match node {
            Value::Object(map) => {
                if let Some(Value::Array(members)) = map.get("allOf") {
                    for member in members {
                        let name = member
                            .get("$ref")
                            .and_then(Value::as_str)
                            .and_then(|r| r.strip_prefix("#/components/schemas/"));
                        if let Some(name) = name {
                            found.push(name.to_string());
                        }
                    }
                }
                map.values().for_each(|child| walk(child, found));
            }
            Value::Array(items) => items.iter().for_each(|child| walk(child, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(schemas, &mut found);
    found
}

/// Adds `additionalProperties: false` to object schemas that list their properties and say
/// nothing about others, unless `open` (an `allOf` member).
fn close_objects(schema: &mut Value, open: bool) {
    let Value::Object(map) = schema else {
        return;
    };
    if !open
        && map.get("properties").is_some_and(Value::is_object)
        && !map.contains_key("additionalProperties")
    {
        map.insert("additionalProperties".into(), Value::Bool(false));
    }
    if let Some(Value::Object(properties)) = map.get_mut("properties") {
        properties
            .values_mut()
            .for_each(|property| close_objects(property, false));
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(child) = map.get_mut(key) {
            close_objects(child, false);
        }
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(Value::Array(members)) = map.get_mut(key) {
            members
                .iter_mut()
                .for_each(|member| close_objects(member, false));
        }
    }
    if let Some(Value::Array(members)) = map.get_mut("allOf") {
        members
            .iter_mut()
            .for_each(|member| close_objects(member, true));
    }
}

/// The specs the emulator imitates.
pub struct Specs {
    /// `config.yaml` at HEAD: the Config API.
    pub config: Spec,
    /// `v1.6.0/config.yaml`: the last Config API with `workspaces/list`.
    pub config_v1_6: Spec,
    /// `api.yaml`: the public API.
    pub public: Spec,
    /// `api-problems.yaml`: the public API's error bodies.
    pub problems: Spec,
}

impl Specs {
    pub fn load() -> Self {
        let dir = spec_dir();
        Self {
            config: Spec::load(&dir, "config.yaml"),
            config_v1_6: Spec::load(&dir, "v1.6.0/config.yaml"),
            public: Spec::load(&dir, "api.yaml"),
            problems: Spec::load(&dir, "api-problems.yaml"),
        }
    }
}
