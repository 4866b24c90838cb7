//! How failures become span status and `exception` events, as MLflow records a Python exception:
//! status ERROR with `"<Type>: <message>"` and an event with `exception.type`, `exception.message` and
//! `exception.stacktrace` (for Rust errors: the source chain; for panics: the panic message).

use std::any::Any;
use std::error::Error;
use std::fmt::{Debug, Display};

use mlflow_tracing_core::{SpanEvent, SpanStatusCode};
use serde_json::Value;

use crate::span_data::SpanMutation;

/// A failure, described.
#[derive(Debug)]
pub struct ErrorParts {
    type_name: String,
    message: String,
    stacktrace: String,
}

/// `core::num::error::ParseIntError` → `ParseIntError`; generic arguments are shortened the same way.
pub(crate) fn short_type_name(full: &str) -> String {
    let mut short = String::with_capacity(full.len());
    let mut segment_start = 0;
    for (index, character) in full.char_indices() {
        if matches!(
            character,
            '<' | '>' | ',' | ' ' | '(' | ')' | '[' | ']' | '&'
        ) {
            short.push_str(last_path_segment(&full[segment_start..index]));
            short.push(character);
            segment_start = index + character.len_utf8();
        }
    }
    short.push_str(last_path_segment(&full[segment_start..]));
    short
}

fn last_path_segment(path: &str) -> &str {
    path.rsplit("::").next().unwrap_or(path)
}

/// An error with its source chain.
pub(crate) fn error_parts<E: Error + ?Sized>(error: &E) -> ErrorParts {
    let type_name = short_type_name(std::any::type_name::<E>());
    let message = error.to_string();
    let mut stacktrace = format!("{type_name}: {message}");
    let mut source = error.source();
    let mut depth = 0;
    while let Some(cause) = source {
        if depth == 0 {
            stacktrace.push_str("\n\nCaused by:");
        }
        stacktrace.push_str(&format!("\n    {depth}: {cause}"));
        depth += 1;
        source = cause.source();
    }
    ErrorParts {
        type_name,
        message,
        stacktrace,
    }
}

/// A value that is not an `Error` but can be displayed (such as `anyhow::Error` or `String`).
pub(crate) fn display_parts<E: Display + ?Sized>(error: &E) -> ErrorParts {
    let type_name = short_type_name(std::any::type_name::<E>());
    let message = error.to_string();
    // `{:#}` shows the whole chain for types that support it, such as anyhow's.
    let chained = format!("{error:#}");
    ErrorParts {
        stacktrace: format!("{type_name}: {chained}"),
        type_name,
        message,
    }
}

/// A panic's payload.
pub(crate) fn panic_parts(payload: &(dyn Any + Send)) -> ErrorParts {
    let message = payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "Box<dyn Any>".to_owned());
    ErrorParts {
        type_name: "panic".to_owned(),
        stacktrace: format!("panicked: {message}"),
        message,
    }
}

/// The status and the event that record a failure.
pub(crate) fn error_mutations(parts: ErrorParts) -> [SpanMutation; 2] {
    let status_message = format!("{}: {}", parts.type_name, parts.message);
    let attributes = [
        ("exception.type".to_owned(), Value::String(parts.type_name)),
        ("exception.message".to_owned(), Value::String(parts.message)),
        (
            "exception.stacktrace".to_owned(),
            Value::String(parts.stacktrace),
        ),
    ]
    .into_iter()
    .collect();
    let event = SpanEvent {
        name: "exception".to_owned(),
        time_unix_nano: crate::clock::now_ns(),
        attributes,
    };
    [
        SpanMutation::Status(SpanStatusCode::Error, Some(status_message)),
        SpanMutation::Event(Box::new(event)),
    ]
}

/// Autoref specialization on a return value: `(&&&&ErrProbe(&value)).__error_parts()` describes the error
/// of a `Result::Err` (with its chain when it is an `Error`, else by `Display`, else by `Debug`), and is
/// `None` for an `Ok` or for any value that is not a `Result`.
#[derive(Debug)]
pub struct ErrProbe<'a, T: ?Sized>(pub &'a T);

pub trait ProbeError {
    fn __error_parts(&self) -> Option<ErrorParts>;
}
pub trait ProbeDisplay {
    fn __error_parts(&self) -> Option<ErrorParts>;
}
pub trait ProbeDebug {
    fn __error_parts(&self) -> Option<ErrorParts>;
}
pub trait ProbeNotResult {
    fn __error_parts(&self) -> Option<ErrorParts>;
}

impl<T, E: Error> ProbeError for &&&ErrProbe<'_, Result<T, E>> {
    fn __error_parts(&self) -> Option<ErrorParts> {
        self.0.as_ref().err().map(|error| error_parts(error))
    }
}

impl<T, E: Display> ProbeDisplay for &&ErrProbe<'_, Result<T, E>> {
    fn __error_parts(&self) -> Option<ErrorParts> {
        self.0.as_ref().err().map(|error| display_parts(error))
    }
}

impl<T, E: Debug> ProbeDebug for &ErrProbe<'_, Result<T, E>> {
    fn __error_parts(&self) -> Option<ErrorParts> {
        self.0.as_ref().err().map(|error| {
            let type_name = short_type_name(std::any::type_name::<E>());
            let message = format!("{error:?}");
            ErrorParts {
                stacktrace: format!("{type_name}: {message}"),
                type_name,
                message,
            }
        })
    }
}

impl<T: ?Sized> ProbeNotResult for ErrProbe<'_, T> {
    fn __error_parts(&self) -> Option<ErrorParts> {
        None
    }
}

#[cfg(test)]
// The extra borrows are the autoref specialization under test.
#[allow(clippy::needless_borrow)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::num::ParseIntError);
    impl Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("could not read the count")
        }
    }
    impl Error for Outer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn type_names_lose_their_paths() {
        assert_eq!(
            short_type_name("core::num::error::ParseIntError"),
            "ParseIntError"
        );
        assert_eq!(
            short_type_name("alloc::boxed::Box<dyn core::error::Error>"),
            "Box<dyn Error>"
        );
    }

    #[test]
    fn errors_carry_their_source_chain() {
        let result: Result<(), Outer> = Err(Outer("x".parse::<i32>().unwrap_err()));
        let parts = (&&&&ErrProbe(&result)).__error_parts().unwrap();
        assert_eq!(parts.type_name, "Outer");
        assert_eq!(parts.message, "could not read the count");
        assert!(
            parts
                .stacktrace
                .contains("Caused by:\n    0: invalid digit found in string"),
            "{}",
            parts.stacktrace
        );
    }

    #[test]
    fn display_only_and_debug_only_errors_are_described() {
        let text: Result<(), String> = Err(String::from("plain failure"));
        let parts = (&&&&ErrProbe(&text)).__error_parts().unwrap();
        assert_eq!(
            (parts.type_name.as_str(), parts.message.as_str()),
            ("String", "plain failure")
        );
        let debug_only: Result<(), Vec<i32>> = Err(vec![1]);
        assert_eq!(
            (&&&&ErrProbe(&debug_only)).__error_parts().unwrap().message,
            "[1]"
        );
    }

    #[test]
    fn values_that_are_not_errors_have_no_error_parts() {
        let ok: Result<i32, String> = Ok(1);
        assert!((&&&&ErrProbe(&ok)).__error_parts().is_none());
        assert!((&&&&ErrProbe(&42)).__error_parts().is_none());
    }
}
