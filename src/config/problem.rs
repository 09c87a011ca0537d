//! What is wrong with a configuration: each problem with the key path it concerns, and the
//! error that carries all of them at once.

use std::fmt;

/// One thing wrong with (or, from `Config::warnings`, worth knowing about) a configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The key path, e.g. `airbyte.base_url` or `connections[2].cron`; for a file that
    /// cannot be read or parsed, the file's name.
    pub path: String,
    /// What is wrong, and where helpful what would be right. Never contains a secret.
    pub message: String,
}

impl Problem {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in a configuration, not only the first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The problems, in the order found (file order within each section).
    pub problems: Vec<Problem>,
}

impl ConfigErrors {
    /// The errors for a single problem.
    pub fn one(path: impl Into<String>, message: impl Into<String>) -> ConfigErrors {
        ConfigErrors {
            problems: vec![Problem::new(path, message)],
        }
    }

    /// Whether any problem is at exactly `path`.
    pub fn has(&self, path: &str) -> bool {
        self.problems.iter().any(|p| p.path == path)
    }
}

impl fmt::Display for ConfigErrors {
    /// One problem per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_print_one_problem_per_line_with_its_path() {
        let errors = ConfigErrors {
            problems: vec![
                Problem::new("connections[2].cron", "bad rule"),
                Problem::new("airbyte.base_url", "missing"),
            ],
        };
        assert_eq!(
            errors.to_string(),
            "connections[2].cron: bad rule\nairbyte.base_url: missing"
        );
        assert!(errors.has("airbyte.base_url"));
        assert!(!errors.has("airbyte"));
    }
}
