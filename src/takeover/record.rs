//! The take-over record: the schedule each connection had in Airbyte before `--take-over`
//! set it to manual, for `--give-back`. It is a JSON file of its own, not the history store,
//! because the CLI may run as another user than the daemon (root, say): a store opened by
//! that user would leave database and WAL files the daemon cannot write.
//!
//! It is written whole to a temporary file beside it and renamed over it, so a reader never
//! sees half of it; readable and writable by its owner only (0600); and kept owned by whoever
//! owned it before, or by the owner of its directory, when a user who may (root) writes it.
//! Default path: beside the config file, named after it: `cronbyte.toml` keeps its record
//! in `cronbyte.takeover.json`.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::TakeOverError;
use crate::airbyte::AirbyteSchedule;

/// The version of the file's layout, written in it.
const VERSION: u32 = 1;

/// What the record holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// The layout's version.
    pub version: u32,
    /// One entry per connection taken over (or about to be), by instance and id.
    pub connections: Vec<Taken>,
}

/// A connection's schedule in Airbyte before cronbyte took it over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Taken {
    /// The config's name of its Airbyte instance.
    pub instance: String,
    pub connection_id: String,
    /// Its name in Airbyte, for messages.
    pub name: String,
    /// The schedule Airbyte had: what `--give-back` restores.
    pub schedule: AirbyteSchedule,
    /// When it was recorded, just before the change in Airbyte was asked for.
    pub recorded_at: DateTime<Utc>,
}

/// The record's default path for the config at `config`: beside it, named after it.
pub fn default_path(config: &Path) -> PathBuf {
    let stem = config
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "cronbyte".into());
    config.with_file_name(format!("{stem}.takeover.json"))
}

impl Record {
    /// The record at `path`; an empty one when there is no file.
    pub fn load(path: &Path) -> Result<Self, TakeOverError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self {
                    version: VERSION,
                    connections: Vec::new(),
                });
            }
            Err(e) => return Err(error(path, format!("cannot be read: {e}"))),
        };
        let record: Self = serde_json::from_str(&text)
            .map_err(|e| error(path, format!("is not a take-over record: {e}")))?;
        if record.version != VERSION {
            return Err(error(
                path,
                format!(
                    "has version {}, and this cronbyte reads version {VERSION}",
                    record.version
                ),
            ));
        }
        Ok(record)
    }

    /// The entry of a connection, if recorded.
    pub fn get(&self, instance: &str, connection_id: &str) -> Option<&Taken> {
        self.connections
            .iter()
            .find(|t| t.instance == instance && t.connection_id == connection_id)
    }

    /// Records `taken`, replacing the entry of the same connection.
    pub fn put(&mut self, taken: Taken) {
        match self
            .connections
            .iter_mut()
            .find(|t| t.instance == taken.instance && t.connection_id == taken.connection_id)
        {
            Some(entry) => *entry = taken,
            None => self.connections.push(taken),
        }
    }

    /// Forgets a connection.
    pub fn remove(&mut self, instance: &str, connection_id: &str) {
        self.connections
            .retain(|t| !(t.instance == instance && t.connection_id == connection_id));
    }

    /// Writes the record to `path` atomically (a temporary file renamed over it), mode
    /// 0600; with no entry left, the file is removed.
    pub fn save(&self, path: &Path) -> Result<(), TakeOverError> {
        if self.connections.is_empty() {
            return match std::fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(error(path, format!("cannot be removed: {e}"))),
            };
        }
        let mut text = serde_json::to_string_pretty(self)
            .map_err(|e| error(path, format!("cannot be encoded: {e}")))?;
        text.push('\n');
        write_atomically(path, text.as_bytes(), 0o600)
            .map_err(|e| error(path, format!("cannot be written: {e}")))
    }
}

fn error(path: &Path, detail: String) -> TakeOverError {
    TakeOverError::Record {
        path: path.to_owned(),
        detail,
    }
}

/// Writes `bytes` to a temporary file in `path`'s directory with `mode`, flushes it to disk
/// and renames it over `path`, so `path` is always either the old or the new content.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut file = tempfile::Builder::new()
        .prefix(".cronbyte-")
        .suffix(".tmp")
        .tempfile_in(&dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
        keep_owner(file.as_file(), path, &dir);
    }
    #[cfg(not(unix))]
    let _ = mode;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    // The rename itself is durable once the directory is; not every system lets a
    // directory be opened for that, and the content is safe either way.
    if let Ok(dir) = std::fs::File::open(&dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Gives the new file the owner the old one had, else its directory's owner, when that is
/// not who writes it: root writing a file in the daemon's directory must not leave it
/// owned by root. Changing an owner takes privileges; without them the file stays its
/// writer's, which is then the only user who could have written it anyway.
#[cfg(unix)]
fn keep_owner(file: &std::fs::File, path: &Path, dir: &Path) {
    use std::os::unix::fs::MetadataExt;
    let wanted = std::fs::metadata(path)
        .or_else(|_| std::fs::metadata(dir))
        .map(|m| (m.uid(), m.gid()));
    let current = file.metadata().map(|m| (m.uid(), m.gid()));
    if let (Ok((uid, gid)), Ok(now)) = (wanted, current)
        && (uid, gid) != now
        && let Err(e) = std::os::unix::fs::fchown(file, Some(uid), Some(gid))
    {
        tracing::debug!(error = %e, "the new file keeps its writer as owner");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::airbyte::BasicUnit;

    fn taken(id: &str) -> Taken {
        Taken {
            instance: "default".into(),
            connection_id: id.into(),
            name: "orders".into(),
            schedule: AirbyteSchedule::Basic {
                units: 24,
                time_unit: BasicUnit::Hours,
            },
            recorded_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        }
    }

    #[test]
    fn the_record_is_beside_the_config_and_named_after_it() {
        assert_eq!(
            default_path(Path::new("/etc/cronbyte/cronbyte.toml")),
            Path::new("/etc/cronbyte/cronbyte.takeover.json")
        );
    }

    #[test]
    fn a_record_survives_a_round_trip_and_an_empty_one_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        assert_eq!(Record::load(&path).unwrap().connections, vec![]);
        let mut record = Record::load(&path).unwrap();
        record.put(taken("a"));
        record.put(taken("b"));
        record.put(taken("a"));
        record.save(&path).unwrap();
        let back = Record::load(&path).unwrap();
        assert_eq!(back, record);
        assert_eq!(back.connections.len(), 2);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let mut empty = back;
        empty.remove("default", "a");
        empty.remove("default", "b");
        empty.save(&path).unwrap();
        assert!(!path.exists());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(leftovers.is_empty(), "no temporary file is left behind");
    }

    #[test]
    fn a_file_that_is_no_record_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        std::fs::write(&path, "{\"connections\": 3}").unwrap();
        let message = Record::load(&path).unwrap_err().to_string();
        assert!(message.contains("r.json"), "{message}");
        assert!(message.contains("not a take-over record"), "{message}");
    }
}
