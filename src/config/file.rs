//! Reading `pinhole.toml`: a `[record]` and an `[enforce]` table whose keys are the
//! commands' long option names, each value kept with where it was written, so that every
//! problem found later (an unknown key, a bad value) names its line and column.

use std::path::Path;

use anyhow::{bail, Context, Result};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// The commands a configuration file sets options for.
pub const SECTIONS: [&str; 2] = ["record", "enforce"];

/// One key of a section, as text clap would take on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub key: String,
    pub value: Value,
    /// "FILE:LINE:COL" of the key.
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A string, integer or float, as written.
    One(String),
    Flag(bool),
    /// An array of strings, integers or floats.
    Many(Vec<String>),
}

/// A parsed configuration file.
#[derive(Debug, Default)]
pub struct ConfigFile {
    /// (section, its settings in file order).
    pub sections: Vec<(String, Vec<Setting>)>,
}

impl ConfigFile {
    pub fn section(&self, name: &str) -> &[Setting] {
        self.sections
            .iter()
            .find(|(s, _)| s == name)
            .map_or(&[], |(_, v)| v.as_slice())
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

pub fn load(path: &Path) -> Result<ConfigFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the configuration file {}", path.display()))?;
    parse(path, &text)
}

pub fn parse(path: &Path, text: &str) -> Result<ConfigFile> {
    let at = |offset: usize| {
        let (line, col) = line_col(text, offset);
        format!("{}:{line}:{col}", path.display())
    };
    // The earliest problem in the text: the parser goes on after one, and what it
    // stumbles on next (a string's continuation read as a key) misleads.
    let (doc, errors) = DeTable::parse_recoverable(text);
    let first = errors
        .iter()
        .min_by_key(|e| e.span().map_or(0, |s| s.start));
    if let Some(e) = first {
        let offset = e.span().map_or(0, |s| s.start);
        bail!("{}: {}", at(offset), e.message().trim_end());
    }
    let mut tables: Vec<_> = doc.get_ref().iter().collect();
    tables.sort_by_key(|(k, _)| k.span().start);
    let mut sections = Vec::new();
    for (name, table) in tables {
        let name_at = at(name.span().start);
        let name = name.get_ref().as_ref();
        if !SECTIONS.contains(&name) {
            bail!(
                "{name_at}: unknown section `{name}` (a configuration file has [record] and [enforce])"
            );
        }
        let Some(table) = table.get_ref().as_table() else {
            bail!("{name_at}: `{name}` must be a table ([{name}])");
        };
        let mut keys: Vec<_> = table.iter().collect();
        keys.sort_by_key(|(k, _)| k.span().start);
        let settings = keys
            .into_iter()
            .map(|(key, value)| {
                let key_at = at(key.span().start);
                let key = key.get_ref().to_string();
                let value = convert(value).map_err(|why| {
                    anyhow::anyhow!("{}: [{name}] {key}: {why}", at(value.span().start))
                })?;
                Ok(Setting {
                    key,
                    value,
                    at: key_at,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        sections.push((name.to_owned(), settings));
    }
    Ok(ConfigFile { sections })
}

fn scalar(v: &DeValue<'_>) -> Option<String> {
    match v {
        DeValue::String(s) => Some(s.to_string()),
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
            .ok()
            .map(|n| n.to_string()),
        DeValue::Float(f) => Some(f.as_str().to_owned()),
        _ => None,
    }
}

fn convert(value: &Spanned<DeValue<'_>>) -> Result<Value, String> {
    let v = value.get_ref();
    if let Some(s) = scalar(v) {
        return Ok(Value::One(s));
    }
    match v {
        DeValue::Boolean(b) => Ok(Value::Flag(*b)),
        DeValue::Array(items) => items
            .iter()
            .map(|i| {
                scalar(i.get_ref()).ok_or_else(|| {
                    format!(
                        "an array of strings or numbers was expected, not of {}",
                        i.get_ref().type_str()
                    )
                })
            })
            .collect::<Result<_, _>>()
            .map(Value::Many),
        other => Err(format!(
            "a string, number, boolean or array was expected, not a {}",
            other.type_str()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<ConfigFile> {
        parse(Path::new("p.toml"), text)
    }

    #[test]
    fn values_keep_their_place_and_kind() {
        let c = parsed(
            "[record]\nout = \"/d\"\nring-size = \"16MiB\"\npersist = true\nhost-resolver = [\"a\", \"b\"]\n\n[enforce]\nname-capacity = 0x100\n",
        )
        .unwrap();
        let r = c.section("record");
        assert_eq!(r[0].key, "out");
        assert_eq!(r[0].value, Value::One("/d".into()));
        assert_eq!(r[0].at, "p.toml:2:1");
        assert_eq!(r[2].value, Value::Flag(true));
        assert_eq!(r[3].value, Value::Many(vec!["a".into(), "b".into()]));
        assert_eq!(
            c.section("enforce")[0].value,
            Value::One("256".into()),
            "integers as decimal text"
        );
    }

    #[test]
    fn unknown_sections_and_bad_values_name_their_place() {
        let e = parsed("[record]\nout = \"/d\"\n\n[recrod]\nout = 1\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("p.toml:4:2: unknown section `recrod`"),
            "{e}"
        );
        let e = parsed("[record]\nout = { a = 1 }\n").unwrap_err();
        assert!(
            e.to_string().starts_with("p.toml:2:7: [record] out:"),
            "{e}"
        );
        let e = parsed("[record]\nout = \"/d\n").unwrap_err();
        assert!(e.to_string().starts_with("p.toml:2:"), "{e}");
        let e = parsed("record = 1\n").unwrap_err();
        assert!(e.to_string().contains("must be a table"), "{e}");
    }
}
