//! Unknown keys, all of them at once. serde's `deny_unknown_fields` stops at the first unknown
//! key, so a file with two typos showed one, then the other after a fix. Here the merged tree
//! (file plus environment) is deserialized, each unknown key the error names is recorded with
//! its path and the nearest valid key, taken out of the tree, and the tree deserialized again,
//! until no unknown key is left. A key set by an environment override is reported by the name
//! of its variable, since the file does not contain it.

use ::config::{Value, ValueKind};
use serde::de::DeserializeOwned;

/// Where the environment's values come from, in `config`'s words.
const FROM_ENVIRONMENT: &str = "the environment";

/// What [`deserialize_all`] found.
pub(super) struct Deserialized<T> {
    /// The value, when the tree without its unknown keys deserializes.
    pub value: Option<T>,
    /// One line per unknown key, sorted by path.
    pub unknown: Vec<String>,
    /// The error that stopped deserialization, if not an unknown key.
    pub other: Option<String>,
}

/// Deserializes `root`, collecting every unknown key instead of stopping at the first.
pub(super) fn deserialize_all<T: DeserializeOwned>(mut root: Value, env_prefix: &str) -> Deserialized<T> {
    let mut unknown = Vec::new();
    let mut other = None;
    let mut value = None;
    // Bounded: each round removes one key, and a file has only so many.
    for _ in 0..1000 {
        let error = match root.clone().try_deserialize::<T>() {
            Ok(v) => {
                value = Some(v);
                break;
            }
            Err(e) => e,
        };
        let removed = UnknownKey::from_error(&error)
            .and_then(|u| remove(&mut root, &u.parent, &u.key).map(|removed| (u, removed)));
        let Some((key, removed)) = removed else {
            other = Some(error.to_string());
            break;
        };
        unknown.push(key.describe(removed.origin() == Some(FROM_ENVIRONMENT), env_prefix));
    }
    unknown.sort();
    Deserialized { value, unknown, other }
}

/// An unknown key as serde and `config` report it.
struct UnknownKey {
    /// Path of the table that holds it (`cache`, `jwt[0].issuer`), empty at the top.
    parent: String,
    key: String,
    /// The valid keys of that table.
    expected: Vec<String>,
}

impl UnknownKey {
    /// `unknown field `ttl`, expected one of `maxEntries`, `ttlSeconds`` (with the parent as
    /// the error's key when nested).
    fn from_error(error: &::config::ConfigError) -> Option<UnknownKey> {
        let (message, parent) = match error {
            ::config::ConfigError::At { error, key, .. } => (error.to_string(), key.clone().unwrap_or_default()),
            other => (other.to_string(), String::new()),
        };
        let rest = message.strip_prefix("unknown field `")?;
        let (key, rest) = rest.split_once('`')?;
        let expected = rest.split('`').skip(1).step_by(2).map(str::to_string).collect();
        Some(UnknownKey { parent, key: key.to_string(), expected })
    }

    fn describe(&self, from_environment: bool, env_prefix: &str) -> String {
        let parent = display_path(&self.parent);
        let path = if parent.is_empty() { self.key.clone() } else { format!("{parent}.{}", self.key) };
        let nearest = nearest(&self.key, &self.expected);
        let (place, hint) = if from_environment {
            let suggestion = nearest.map(|n| {
                let sibling = if parent.is_empty() { n.to_string() } else { format!("{parent}.{n}") };
                format!("; did you mean {}?", env_variable(env_prefix, &sibling))
            });
            (format!("{path} (from {})", env_variable(env_prefix, &path)), suggestion)
        } else {
            (path, nearest.map(|n| format!("; did you mean `{n}`?")))
        };
        let hint = hint.unwrap_or_else(|| match self.expected.is_empty() {
            true => "; nothing may be set here".into(),
            false => format!("; valid keys here: {}", self.expected.join(", ")),
        });
        format!("{place}: unknown key{hint}")
    }
}

/// The valid key a typo most likely meant: one that starts with it or that it starts with
/// (`ttl`, `ttlSecond` for `ttlSeconds`), else the closest by edit distance when close enough
/// to be a typo rather than another word.
fn nearest<'a>(unknown: &str, expected: &'a [String]) -> Option<&'a str> {
    let lower = unknown.to_ascii_lowercase();
    let score = |candidate: &String| {
        let c = candidate.to_ascii_lowercase();
        let prefix = c.starts_with(&lower) || lower.starts_with(&c);
        (!prefix, edit_distance(&lower, &c))
    };
    let best = expected.iter().min_by_key(|c| score(c))?;
    let (not_prefix, distance) = score(best);
    (!not_prefix || distance <= (unknown.len() / 3).max(2)).then_some(best.as_str())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// `cache.ttlSeconds` as the override variable that sets it: `PREFIX__CACHE__TTL_SECONDS`.
fn env_variable(prefix: &str, path: &str) -> String {
    let mut name = prefix.to_string();
    for segment in path.split('.') {
        name.push_str("__");
        let chars: Vec<char> = segment.chars().collect();
        for (i, &c) in chars.iter().enumerate() {
            // A word starts at an upper-case letter after a lower-case one, and at the last
            // capital of an acronym followed by lower case (`clientCAFile`: CLIENT_CA_FILE).
            let prev = i.checked_sub(1).map(|p| chars[p]);
            let next = chars.get(i + 1);
            let starts_word = c.is_ascii_uppercase()
                && prev.is_some_and(|p| !p.is_ascii_uppercase() || next.is_some_and(|n| n.is_ascii_lowercase()));
            if starts_word {
                name.push('_');
            }
            name.push(c.to_ascii_uppercase());
        }
    }
    name
}

/// A step of a path as `config` writes it: `jwt[0]issuer`, `cache`, `a.b[2][1].c`.
enum Step {
    Key(String),
    Index(usize),
}

fn steps(path: &str) -> Option<Vec<Step>> {
    let mut steps = Vec::new();
    let mut name = String::new();
    let mut chars = path.chars();
    let end_name = |name: &mut String, steps: &mut Vec<Step>| {
        if !name.is_empty() {
            steps.push(Step::Key(std::mem::take(name)));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '.' => end_name(&mut name, &mut steps),
            '[' => {
                end_name(&mut name, &mut steps);
                let index: String = chars.by_ref().take_while(|c| *c != ']').collect();
                steps.push(Step::Index(index.parse().ok()?));
            }
            c => name.push(c),
        }
    }
    end_name(&mut name, &mut steps);
    Some(steps)
}

/// `jwt[0]issuer` written the way the other messages write paths: `jwt[0].issuer`.
fn display_path(path: &str) -> String {
    let Some(steps) = steps(path) else { return path.to_string() };
    let mut out = String::new();
    for step in steps {
        match step {
            Step::Key(k) if out.is_empty() => out.push_str(&k),
            Step::Key(k) => out.push_str(&format!(".{k}")),
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Removes `key` from the table at `parent`; returns what it held.
fn remove(root: &mut Value, parent: &str, key: &str) -> Option<Value> {
    let mut at = root;
    for step in steps(parent)? {
        at = match (step, &mut at.kind) {
            (Step::Key(k), ValueKind::Table(table)) => table.get_mut(&k)?,
            (Step::Index(i), ValueKind::Array(items)) => items.get_mut(i)?,
            _ => return None,
        };
    }
    let ValueKind::Table(table) = &mut at.kind else { return None };
    table.remove(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_key_is_a_prefix_match_or_a_close_typo() {
        let keys: Vec<String> = ["maxEntries", "ttlSeconds", "negativeTtlSeconds"].map(String::from).to_vec();
        assert_eq!(nearest("ttl", &keys), Some("ttlSeconds"));
        assert_eq!(nearest("ttlSecond", &keys), Some("ttlSeconds"));
        assert_eq!(nearest("maxEntrys", &keys), Some("maxEntries"));
        assert_eq!(nearest("color", &keys), None);
    }

    #[test]
    fn paths_are_read_as_config_writes_them() {
        assert_eq!(display_path("jwt[0]issuer"), "jwt[0].issuer");
        assert_eq!(display_path("jwt[1].claimMappings.extra[2]"), "jwt[1].claimMappings.extra[2]");
        assert_eq!(display_path("cache"), "cache");
    }

    #[test]
    fn override_variables_are_named_as_the_environment_spells_them() {
        assert_eq!(env_variable("TOKENREVIEW_GATEWAY", "cache.ttlSeconds"), "TOKENREVIEW_GATEWAY__CACHE__TTL_SECONDS");
        assert_eq!(env_variable("P", "server.tls.clientCAFile"), "P__SERVER__TLS__CLIENT_CA_FILE");
    }
}
