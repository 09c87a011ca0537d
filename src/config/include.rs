//! `include = ["pipelines/ecommerce.toml", ...]`: more `[[sources]]`, `[[destinations]]`,
//! `[[connections]]` and `[[groups]]` from other files (relative to the including one), so a
//! pipeline can live in a file of its own. Their entries follow the main file's, and a
//! problem in one names the file and the entry's place in it.

use std::path::{Path, PathBuf};

use config::ValueKind;

use super::problem::Problem;
use super::reader::{Problems, Table};
use super::{Format, parse_error_text};

/// The lists an included file may add to.
const LISTS: [&str; 4] = ["sources", "destinations", "connections", "groups"];

/// Which entries of each list came from which included file.
#[derive(Default)]
pub(super) struct Origins(Vec<Origin>);

struct Origin {
    list: &'static str,
    start: usize,
    count: usize,
    file: String,
}

/// Reads the files `include` names and appends their lists to `root`'s. `base` is the
/// directory relative paths start from (`None`: the working directory).
pub(super) fn read(root: &mut Table, base: Option<&Path>, p: &mut Problems) -> Origins {
    let Some(files) = root.string_list("include", p) else {
        return Origins::default();
    };
    let mut origins = Vec::new();
    for (k, file) in files.iter().enumerate() {
        let at = format!("include[{k}]");
        let path = match base {
            Some(dir) if Path::new(file).is_relative() => dir.join(file),
            _ => PathBuf::from(file),
        };
        let shown = path.display().to_string();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                p.push(Problem::new(at, format!("cannot read {shown}: {e}")));
                continue;
            }
        };
        let format = Format::of_path(&path);
        let tree = ::config::Config::builder()
            .add_source(::config::File::from_str(&text, format.file_format()))
            .build()
            .and_then(|c| ::config::Source::collect(&c));
        let tree = match tree {
            Ok(tree) => tree,
            Err(e) => {
                p.push(Problem::new(
                    at,
                    format!(
                        "{shown} is not valid {}: {}",
                        format.name(),
                        parse_error_text(e)
                    ),
                ));
                continue;
            }
        };
        let mut entries: Vec<_> = tree.into_iter().collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, value) in entries {
            let Some(list) = LISTS.iter().copied().find(|l| *l == key) else {
                p.push(Problem::new(
                    &at,
                    format!(
                        "{shown}: `{key}` can't be in an included file, only [[sources]], \
                         [[destinations]], [[connections]] and [[groups]]"
                    ),
                ));
                continue;
            };
            match value.kind {
                ValueKind::Array(items) => {
                    let count = items.len();
                    let start = root.append(list, items);
                    origins.push(Origin {
                        list,
                        start,
                        count,
                        file: shown.clone(),
                    });
                }
                _ => p.push(Problem::new(
                    &at,
                    format!("{shown}: `{key}` must be a list of tables ([[{key}]])"),
                )),
            }
        }
    }
    Origins(origins)
}

impl Origins {
    /// Rewrites a problem at `connections[7].cron` as one at
    /// `pipelines/a.toml: connections[1].cron` when entry 7 came from that file.
    pub(super) fn locate(&self, problems: &mut [Problem]) {
        for problem in problems {
            let found = self.0.iter().find_map(|o| {
                let rest = problem.path.strip_prefix(o.list)?.strip_prefix('[')?;
                let (index, tail) = rest.split_once(']')?;
                let i = index.parse::<usize>().ok()?;
                (i >= o.start && i < o.start + o.count)
                    .then(|| format!("{}: {}[{}]{tail}", o.file, o.list, i - o.start))
            });
            if let Some(path) = found {
                problem.path = path;
            }
        }
    }
}
