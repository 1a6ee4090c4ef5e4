//! The machinery behind the one list of settings in `config/mod.rs`: the `settings!` macro, and
//! where a value came from ([`Origin`]), which every error names.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::de::IgnoredAny;
use toml::Spanned;

use super::values::{FileValue, FlagField};
use super::ConfigError;

/// Declares every setting once. An entry is
///
/// ```text
/// /// The flag's help.
/// name: FIELD_TYPE, flag(CLAP ARGS), key "file_key";
/// ```
///
/// where `FIELD_TYPE` is `Option<T>` (a flag with a value), `Vec<T>` (a repeatable flag; a string
/// or an array in the file) or `bool` (a switch; a boolean in the file), `T` being a
/// [`Setting`](super::values::Setting). The flag is `--name` in kebab case (do not set `long`
/// in the clap arguments); `flag(...)` or `key "..."` may be left out for a setting that is
/// only one of them. From the list come:
/// - `Overrides`, the flags (clap `Args`, flattened into `strata serve`);
/// - `FileSettings`, the file (serde, unknown keys refused);
/// - `Settings`, each setting's value as given, the flag's winning over the file's key by key,
///   with its [`Origin`].
macro_rules! settings {
    // Munches one entry at a time: a doc comment, repeated inside an optional part, cannot be
    // transcribed from a single pattern, so each shape of entry has its own arm.
    (@munch [$($done:tt)*]
        $(#[doc = $doc:tt])* $field:ident: $ty:ty, flag $args:tt, key $key:tt; $($rest:tt)*
    ) => {
        settings!(@munch [$($done)*
            { $field: $ty, flag($(#[doc = $doc])* #[arg $args] $field), key($key) }
        ] $($rest)*);
    };
    (@munch [$($done:tt)*]
        $(#[doc = $doc:tt])* $field:ident: $ty:ty, flag $args:tt; $($rest:tt)*
    ) => {
        settings!(@munch [$($done)*
            { $field: $ty, flag($(#[doc = $doc])* #[arg $args] $field) }
        ] $($rest)*);
    };
    (@munch [$($done:tt)*]
        $(#[doc = $doc:tt])* $field:ident: $ty:ty, key $key:tt; $($rest:tt)*
    ) => {
        settings!(@munch [$($done)* { $field: $ty, key($key) }] $($rest)*);
    };
    (@munch [$(
        { $field:ident: $ty:ty
          $(, flag($(#[doc = $doc:tt])* #[arg $args:tt] $flag:ident))?
          $(, key($key:tt))? }
    )*]) => {
        /// The settings given as flags to `strata serve`; each one given replaces the file's key.
        #[derive(Debug, Clone, Default, clap::Args)]
        pub struct Overrides {$($(
            $(#[doc = $doc])*
            #[arg(
                long,
                value_parser = <$ty as $crate::daemon::config::values::FlagField>::parser(),
                allow_negative_numbers = <$ty as $crate::daemon::config::values::FlagField>::NEGATIVE_NUMBERS,
            )]
            #[arg $args]
            pub $flag: $ty,
        )?)*}

        /// The configuration file's keys.
        #[derive(Debug, Default, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct FileSettings {$($(
            #[serde(rename = $key)]
            $field: Option<$crate::daemon::config::values::FileValue<
                <$ty as $crate::daemon::config::values::FlagField>::File,
            >>,
        )?)*}

        /// Every setting as given, if it was.
        struct Settings {$(
            $field: Option<$crate::daemon::config::declare::Given<
                <$ty as $crate::daemon::config::values::FlagField>::Value,
            >>,
        )*}

        impl Settings {
            /// Each setting from its flag if given, else from the file's key: a file value a
            /// flag replaces is not even checked.
            fn merge(
                flags: &Overrides,
                file: $crate::daemon::config::declare::ParsedFile<FileSettings>,
            ) -> Result<Settings, $crate::daemon::config::ConfigError> {
                let $crate::daemon::config::declare::ParsedFile { settings: file, place } = file;
                Ok(Settings {$(
                    $field: {
                        let flag = None $(.or($crate::daemon::config::declare::Given::from_flag(
                            &flags.$flag,
                            stringify!($flag),
                        )))?;
                        match flag {
                            Some(given) => Some(given),
                            None => None $(.or(place.take($key, file.$field)?))?,
                        }
                    },
                )*})
            }
        }
    };
    ($($entries:tt)*) => {
        settings!(@munch [] $($entries)*);
    };
}

pub(super) use settings;

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A flag, by its field name (`local_stratum` for `--local-stratum`).
    Flag(&'static str),
    /// A key of the configuration file, at a line if known.
    File {
        path: PathBuf,
        line: Option<usize>,
        key: &'static str,
    },
    /// Nothing was given; the default is used.
    Default(&'static str),
}

impl Origin {
    /// An error about this value, naming it: `flag `--x`: REASON`,
    /// `PATH:LINE: config key `x`: REASON` or `default `x`: REASON`.
    pub fn error(&self, reason: impl fmt::Display) -> ConfigError {
        ConfigError::new(match self {
            Origin::Flag(_) => format!("flag `{}`: {reason}", self.name()),
            Origin::File {
                path,
                line: Some(line),
                key,
            } => format!("{}:{line}: config key `{key}`: {reason}", path.display()),
            Origin::File {
                path,
                line: None,
                key,
            } => format!("{}: config key `{key}`: {reason}", path.display()),
            Origin::Default(key) => format!("default `{key}`: {reason}"),
        })
    }

    /// The flag or key, as another setting's error names it.
    pub fn name(&self) -> String {
        match self {
            Origin::Flag(field) => format!("--{}", field.replace('_', "-")),
            Origin::File { key, .. } | Origin::Default(key) => (*key).to_string(),
        }
    }
}

/// A setting's value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Given<T> {
    pub value: T,
    pub origin: Origin,
}

impl<T> Given<T> {
    /// The flag's value, if it was given.
    pub fn from_flag<F: FlagField<Value = T>>(flag: &F, field: &'static str) -> Option<Given<T>> {
        flag.given().map(|value| Given {
            value,
            origin: Origin::Flag(field),
        })
    }

    /// Applies `f` to the value; its error names the setting.
    pub fn check<U>(self, f: impl FnOnce(T) -> Result<U, String>) -> Result<U, ConfigError> {
        let Given { value, origin } = self;
        f(value).map_err(|e| origin.error(e))
    }
}

/// A configuration file parsed: its settings, and where its keys are.
#[derive(Debug, Default)]
pub struct ParsedFile<S> {
    pub settings: S,
    pub place: FilePlace,
}

/// The file's path and the line of each of its keys.
#[derive(Debug, Default)]
pub struct FilePlace {
    path: PathBuf,
    lines: BTreeMap<String, usize>,
}

impl FilePlace {
    /// Finds the line of every top-level key. A second, type-blind parse: the typed one cannot
    /// keep positions of its own, since toml's `Spanned` fails on a dotted table such as
    /// `[server.x]`, which must get a clear "expected ..., found a table" instead.
    pub fn locate(path: PathBuf, text: &str) -> Result<FilePlace, toml::de::Error> {
        let keys: BTreeMap<Spanned<String>, IgnoredAny> = toml::from_str(text)?;
        let lines = keys
            .keys()
            .map(|key| (key.get_ref().clone(), line_of(text, key.span().start)))
            .collect();
        Ok(FilePlace { path, lines })
    }

    /// The file's value for `key`, or its error naming the key and line.
    pub fn take<F: Into<T>, T>(
        &self,
        key: &'static str,
        value: Option<FileValue<F>>,
    ) -> Result<Option<Given<T>>, ConfigError> {
        let Some(FileValue(value)) = value else {
            return Ok(None);
        };
        let origin = Origin::File {
            path: self.path.clone(),
            line: self.lines.get(key).copied(),
            key,
        };
        match value {
            Ok(value) => Ok(Some(Given {
                value: value.into(),
                origin,
            })),
            Err(reason) => Err(origin.error(reason)),
        }
    }
}

/// The 1-based line of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}
